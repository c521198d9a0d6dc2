"""Choosing hyperparameters without dev: MNLI pairs held out of train."""

from __future__ import annotations

import json

import pytest

from pipelines.data_files import DataError
from pipelines.tasks.mnli import MnliDataArguments, load_raw_datasets


def write_mnli(folder, n_train=50):
    labels = ["entailment", "neutral", "contradiction"]
    for split, n in (("train", n_train), ("validation_matched", 5), ("validation_mismatched", 5)):
        rows = [
            {"premise": f"{split} premise {i}", "hypothesis": f"hypothesis {i}", "label": labels[i % 3]}
            for i in range(n)
        ]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder


def test_heldout_pairs_come_from_train_only_and_are_fixed(tmp_path):
    folder = write_mnli(tmp_path)
    raw = load_raw_datasets(MnliDataArguments(data_dir=str(folder), heldout_train_samples=10))
    assert set(raw) == {"train", "heldout"}  # dev is not even loaded into the run
    assert len(raw["heldout"]) == 10 and len(raw["train"]) == 40
    assert set(raw["heldout"]["idx"]).isdisjoint(raw["train"]["idx"])
    assert all(p.startswith("train premise") for p in raw["heldout"]["premise"])
    # Same seed, same pairs, whatever max_train_samples says; another seed, other pairs.
    again = load_raw_datasets(MnliDataArguments(data_dir=str(folder), heldout_train_samples=10, max_train_samples=20))
    assert again["heldout"]["idx"] == raw["heldout"]["idx"] and len(again["train"]) == 20
    other = load_raw_datasets(MnliDataArguments(data_dir=str(folder), heldout_train_samples=10, heldout_seed=7))
    assert other["heldout"]["idx"] != raw["heldout"]["idx"]
    # Not simply the first or last pairs of the file.
    assert raw["heldout"]["idx"] != list(range(10)) and raw["heldout"]["idx"] != list(range(40, 50))


def test_heldout_larger_than_train_is_an_error(tmp_path):
    with pytest.raises(DataError, match="heldout_train_samples must be between 1 and 49"):
        load_raw_datasets(MnliDataArguments(data_dir=str(write_mnli(tmp_path)), heldout_train_samples=50))


# --- The pretraining corpus holds no dev text ------------------------------------------------------------------

from pipelines.corpus import DevIndex, build_corpus, dev_texts, sentences, train_side_sources, words  # noqa: E402


def test_dev_text_inside_a_line_is_caught():
    dev = DevIndex(
        ["The committee met in Warsaw in 1921 and agreed on a new border treaty for the region.", "The dog is asleep."]
    )
    corpus = build_corpus(
        {
            "wiki": [
                "Unrelated text about rivers and mountains.",
                # a 13-gram:
                "Before that, the committee met in Warsaw in 1921 and agreed on a new border treaty, it is said",
                "He looked up. The dog is asleep! Then it rained.",  # a whole short dev sentence, other punctuation
                "The dog is asleep in the sun all day long.",  # shares only a 4-word prefix, not the sentence's end
            ]
        },
        dev,
        heldout_fraction=0.0,
    )
    assert corpus["train"] == ["Unrelated text about rivers and mountains."]
    assert corpus["stats"]["wiki"] == {
        "lines": 4,
        "kept": 1,
        "kept_words": 6,
        "dropped_dev_ngram": 1,
        "dropped_dev_sentence": 2,
    }


def test_real_corpus_has_no_dev_paragraph_or_sentence(data_dir):
    """Built from the staged train-side text; checked with a plainer normaliser than the filter's own."""
    corpus = build_corpus(train_side_sources(data_dir), DevIndex(dev_texts(data_dir)))
    lines = corpus["train"] + corpus["heldout"]
    assert len(lines) > 50_000

    def plain(text):
        return " ".join(text.lower().split())

    corpus_lines = {plain(line) for line in lines}
    corpus_sentences = {plain(s) for line in lines for s in sentences(line)}
    dev = dev_texts(data_dir)
    dev_sentences = {plain(s) for text in dev for s in sentences(text) if len(words(s)) >= 4}
    assert not corpus_lines & {plain(text) for text in dev}  # no dev paragraph or MNLI dev sentence as a line
    assert not corpus_sentences & dev_sentences  # no dev sentence anywhere in a line
    assert len(dev_sentences) > 30_000  # the check saw the dev sets


def test_korean_corpus_holds_the_train_side_articles_and_none_of_the_heldout_ones(data_dir, tmp_path):
    """ko_trainside: the KorQuAD recipes' article split of the staged dev file; the held-out articles' contexts and
    questions are its dev text, the others' contexts are corpus lines."""
    from pipelines.arguments import RecipeError
    from pipelines.corpus import CorpusArguments, korquad_split, main

    info = main(CorpusArguments(corpus="ko_trainside", data_dir=str(data_dir), output_dir=str(tmp_path)))
    lines = set((tmp_path / "train.txt").read_text(encoding="utf-8").splitlines())
    lines |= set((tmp_path / "heldout.txt").read_text(encoding="utf-8").splitlines())
    train, heldout = korquad_split(data_dir, 0.1, 42)  # the recipes' heldout_fraction and heldout_seed
    heldout_contexts = {" ".join(row["context"].split()) for row in heldout}
    train_contexts = {" ".join(row["context"].split()) for row in train} - heldout_contexts
    assert heldout_contexts and not lines & heldout_contexts
    assert train_contexts <= lines  # every train-side paragraph, once
    assert info["sources"]["korquad_train_side_contexts"]["kept"] == len(train_contexts)
    assert "held-out KorQuAD articles" in info["decontamination"]
    with pytest.raises(RecipeError, match="corpus is 'fr'"):
        CorpusArguments(corpus="fr")
