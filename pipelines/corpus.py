"""A pretraining corpus from train-side text only, with every line that shares text with dev removed.

    python scripts/build_corpus.py --data_dir ../shared/data --output_dir outputs/corpus/en_trainside
    python scripts/build_corpus.py --corpus ko_trainside --output_dir outputs/corpus/ko_trainside

Sources of `en_trainside` (the staged copies in ../shared/data, see its README):
- SQuAD v1.1 train contexts, each paragraph once;
- MNLI train premises and hypotheses, each sentence once;
- the English Wikipedia sample and the WikiText-2 text in corpus/.
Its dev text: SQuAD v1.1 dev contexts, MNLI dev matched and mismatched sentences.

Sources of `ko_trainside`: the Korean Wikipedia sample in corpus/ and the contexts of the KorQuAD articles the
KorQuAD recipes train on. No KorQuAD train file is staged, so those recipes split the dev file by article
(`heldout_from_file`, pipelines/tasks/squad_files.split_by_article); here the same split (fraction 0.1, seed 42, as
the recipes) gives the train side, and the held-out articles' contexts and questions are the dev text.

Dev text must never reach pretraining, or the comparison with a model that never saw dev would be unfair. Wikipedia
samples can hold the articles SQuAD's dev questions are about, and MNLI train and dev share genres and stock phrases,
so every candidate line is checked against the dev sets (SQuAD dev contexts, MNLI dev matched and mismatched):
- a line that shares any 13-word sequence with dev text is dropped (the decontamination rule of GPT-3's paper);
- a line that contains a whole dev sentence of 4 or more words is dropped (MNLI hypotheses are often shorter than
  13 words, which the first rule cannot see);
- a line that is a dev text or dev sentence of any length ("Yes.", "Of course not.") is dropped.
Words are compared lowercased with punctuation removed, so spacing and quote styles do not hide a match.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.arguments import RecipeError
from pipelines.tasks.squad_files import read_squad_file, split_by_article

NGRAM = 13
MIN_SENTENCE_WORDS = 4
# Sentence ends: ., ! or ? (optionally followed by a closing quote or bracket) and whitespace.
SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def sentences(text: str) -> list[str]:
    return [s for s in SENTENCE_END.split(text) if s.strip()]


def ngrams(tokens: list[str], n: int = NGRAM):
    return (" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


class DevIndex:
    """Dev text as 13-word sequences and as whole sentences, for `contains_dev` checks."""

    def __init__(self, dev_texts):
        self.ngrams: set[str] = set()
        self.sentences: set[str] = set()
        self.whole: set[str] = set()  # every dev text and sentence, any length: a line may not be one of them
        for text in dev_texts:
            self.ngrams.update(ngrams(words(text)))
            self.whole.add(" ".join(words(text)))
            for sentence in sentences(text):
                tokens = words(sentence)
                self.whole.add(" ".join(tokens))
                if len(tokens) >= MIN_SENTENCE_WORDS:
                    self.sentences.add(" ".join(tokens))
        # A dev sentence of NGRAM or more words contains a dev NGRAM-gram, which the first check already finds; only
        # the shorter ones need a scan of the line's windows of their length.
        self.sentence_lengths = sorted({n for n in (s.count(" ") + 1 for s in self.sentences) if n < NGRAM})

    def contains_dev(self, text: str) -> str | None:
        """Why `text` may not be used ('line', 'ngram' or 'sentence'), or None when it shares nothing with dev."""
        tokens = words(text)
        if " ".join(tokens) in self.whole:
            return "line"
        if any(gram in self.ngrams for gram in ngrams(tokens)):
            return "ngram"
        for n in self.sentence_lengths:
            if n > len(tokens):
                break
            if any(" ".join(tokens[i : i + n]) in self.sentences for i in range(len(tokens) - n + 1)):
                return "sentence"
        return None


def squad_contexts(path: Path) -> list[str]:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    return [paragraph["context"] for article in data for paragraph in article["paragraphs"]]


def mnli_sentences(path: Path) -> list[str]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [text for row in rows for text in (row["premise"], row["hypothesis"])]


def text_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def train_side_sources(data_dir: Path) -> dict[str, list[str]]:
    return {
        "squad_train_contexts": squad_contexts(data_dir / "squad_v1" / "train.json"),
        "mnli_train_sentences": mnli_sentences(data_dir / "mnli" / "train.jsonl"),
        "enwiki_sample": text_lines(data_dir / "corpus" / "enwiki_sample.txt"),
        "wikitext2": text_lines(data_dir / "corpus" / "wikitext2_test.txt"),
    }


def dev_texts(data_dir: Path) -> list[str]:
    texts = squad_contexts(data_dir / "squad_v1" / "dev.json")
    for split in ("validation_matched", "validation_mismatched"):
        texts += mnli_sentences(data_dir / "mnli" / f"{split}.jsonl")
    return texts


def korquad_split(data_dir: Path, fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """The KorQuAD recipes' article split of the staged dev file: (train-side questions, held-out questions)."""
    rows = read_squad_file(data_dir / "korquad_v1" / "dev.json")
    train, heldout, _ = split_by_article(rows, fraction, seed)
    return train, heldout


def build_corpus(sources: dict[str, list[str]], dev: DevIndex, heldout_fraction: float = 0.01, seed: int = 42) -> dict:
    """Deduplicated, decontaminated lines split into train and held-out (by a hash of the line, fixed by seed).

    Returns {"train": [...], "heldout": [...], "stats": {...}}; lines keep their source order within each side.
    """
    seen: set[str] = set()
    kept: list[str] = []
    stats: dict[str, Counter] = {}
    for name, lines in sources.items():
        counts = stats.setdefault(name, Counter())
        for line in lines:
            line = " ".join(line.split())
            counts["lines"] += 1
            if line in seen:
                counts["duplicate"] += 1
                continue
            seen.add(line)
            reason = dev.contains_dev(line)
            if reason:
                counts[f"dropped_dev_{reason}"] += 1
                continue
            counts["kept"] += 1
            counts["kept_words"] += len(line.split())
            kept.append(line)
    threshold = int(heldout_fraction * 2**32)
    sides: dict[str, list[str]] = {"train": [], "heldout": []}
    for line in kept:
        sides["heldout" if _hash32(seed, line) < threshold else "train"].append(line)
    return {**sides, "stats": {name: dict(c) for name, c in stats.items()}}


def _hash32(seed: int, line: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{line}".encode()).digest()[:4], "big")


def write_corpus(corpus: dict, output_dir: Path, dev_description: str) -> dict:
    output_dir.mkdir(parents=True, exist_ok=True)
    for side in ("train", "heldout"):
        (output_dir / f"{side}.txt").write_text("\n".join(corpus[side]) + "\n", encoding="utf-8")
    summary = {
        "train_lines": len(corpus["train"]),
        "heldout_lines": len(corpus["heldout"]),
        "train_words": sum(len(line.split()) for line in corpus["train"]),
        "sources": corpus["stats"],
        "decontamination": f"lines sharing a {NGRAM}-word sequence or a whole dev sentence of "
        f">= {MIN_SENTENCE_WORDS} words with {dev_description} are dropped",
    }
    (output_dir / "corpus_info.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


@dataclass
class CorpusArguments:
    corpus: str = field(
        default="en_trainside",
        metadata={"help": "en_trainside (SQuAD, MNLI, English wiki text) or ko_trainside (KorQuAD, Korean wiki text)."},
    )
    data_dir: str = field(
        default="../shared/data", metadata={"help": "The staged data folder (squad_v1/, mnli/, korquad_v1/, corpus/)."}
    )
    output_dir: str = field(
        default="outputs/corpus/en_trainside",
        metadata={"help": "Where train.txt, heldout.txt and corpus_info.json go."},
    )
    heldout_fraction: float = field(default=0.01, metadata={"help": "Share of lines held out for perplexity."})
    seed: int = field(default=42, metadata={"help": "Seed of the held-out choice."})
    korquad_heldout_fraction: float = field(
        default=0.1, metadata={"help": "ko_trainside: the KorQuAD recipes' heldout_fraction (articles held out)."}
    )
    korquad_heldout_seed: int = field(default=42, metadata={"help": "ko_trainside: the recipes' heldout_seed."})

    def __post_init__(self):
        if self.corpus not in CORPORA:
            raise RecipeError(f"corpus is {self.corpus!r}; it must be one of {', '.join(CORPORA)}")


def english_trainside(args: CorpusArguments) -> tuple[dict[str, list[str]], list[str]]:
    data_dir = Path(args.data_dir)
    return train_side_sources(data_dir), dev_texts(data_dir)


def korean_trainside(args: CorpusArguments) -> tuple[dict[str, list[str]], list[str]]:
    data_dir = Path(args.data_dir)
    train, heldout = korquad_split(data_dir, args.korquad_heldout_fraction, args.korquad_heldout_seed)
    sources = {
        "korquad_train_side_contexts": list(dict.fromkeys(row["context"] for row in train)),  # each paragraph once
        "kowiki_sample": text_lines(data_dir / "corpus" / "kowiki_sample.txt"),
    }
    return sources, list(dict.fromkeys(text for row in heldout for text in (row["context"], row["question"])))


# Each corpus: what reads its sources and its dev text, and how the dev text is described in corpus_info.json.
CORPORA = {
    "en_trainside": (english_trainside, "SQuAD v1.1 dev contexts or MNLI dev matched/mismatched"),
    "ko_trainside": (korean_trainside, "the contexts and questions of the held-out KorQuAD articles"),
}


def main(args: CorpusArguments) -> dict:
    read, described = CORPORA[args.corpus]
    sources, dev = read(args)
    corpus = build_corpus(sources, DevIndex(dev), args.heldout_fraction, args.seed)
    return write_corpus(corpus, Path(args.output_dir), described)
