"""Choosing hyperparameters without dev: MNLI pairs held out of train."""

from __future__ import annotations

import json

import pytest

from pipelines.data_files import DataError
from pipelines.tasks.mnli import MnliDataArguments, load_raw_datasets


def write_mnli(folder, n_train=50):
    labels = ["entailment", "neutral", "contradiction"]
    for split, n in (("train", n_train), ("validation_matched", 5), ("validation_mismatched", 5)):
        rows = [{"premise": f"{split} premise {i}", "hypothesis": f"hypothesis {i}", "label": labels[i % 3]} for i in range(n)]
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
