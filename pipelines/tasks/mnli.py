"""GLUE MNLI: premise + hypothesis -> entailment / neutral / contradiction.

The task module's functions, in the order a run uses them:
    load_raw_datasets(data_args)             -> DatasetDict(train, validation_matched, validation_mismatched)
    preprocess(raw, tokenizer, data_args, training_args) -> tokenized DatasetDict
    compute_metrics(eval_prediction)         -> accuracy, macro-F1 (the Trainer calls it)
    evaluate_split(trainer, ...)             -> metrics + per-example predictions file for one split
    MnliRun / main(argv)                     -> the whole run, through pipelines/run.py (scripts/run_mnli.py calls it)
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
from scipy.special import softmax
from transformers import Trainer

from pipelines import run_outputs
from pipelines.data_files import DataError, find_split_file, load_from_hub, load_local_file
from pipelines.metrics import load_metric
from pipelines.run import metric_prefix
from pipelines.task_definitions.glue_tasks import LABEL_NAMES
from pipelines.task_definitions.glue_tasks import MNLI as TASK
from pipelines.task_definitions.glue_tasks import normalize_mnli_split as normalize_split
from pipelines.tasks.glue import ClassificationDataArguments, ClassificationRun, keep_first, tokenize_splits

TASKS = {"mnli": TASK}

logger = logging.getLogger("pipelines")

EVAL_SPLITS = ["validation_matched", "validation_mismatched"]
SPLITS = ["train", *EVAL_SPLITS]
# Pairs held out of train for choosing hyperparameters (heldout_train_samples); dev is never used for that.
HELDOUT_SPLIT = "heldout"


@dataclass
class MnliDataArguments(ClassificationDataArguments):
    dataset_name: str | None = field(default="nyu-mll/glue", metadata={"help": "Hub data set (config below)."})
    dataset_config_name: str | None = field(default="mnli", metadata={"help": "Hub data set config."})
    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "Local folder with train/validation_matched/validation_mismatched "
            ".jsonl/.json/.csv/.tsv/.parquet. Used instead of the Hub when set."
        },
    )
    train_file: str | None = field(default=None, metadata={"help": "Local train file (overrides data_dir)."})
    validation_matched_file: str | None = field(default=None, metadata={"help": "Local dev-matched file."})
    validation_mismatched_file: str | None = field(default=None, metadata={"help": "Local dev-mismatched file."})
    heldout_train_samples: int | None = field(
        default=None,
        metadata={
            "help": "Hold out N train pairs (a fixed pseudo-random choice, see heldout_seed) and evaluate on them "
            "instead of dev: for choosing hyperparameters without looking at dev. Training uses the rest."
        },
    )
    heldout_seed: int = field(
        default=42, metadata={"help": "Seed of the held-out choice (same seed, same pairs; independent of `seed`)."}
    )

    def local_files(self) -> dict[str, str] | None:
        explicit = {
            "train": self.train_file,
            "validation_matched": self.validation_matched_file,
            "validation_mismatched": self.validation_mismatched_file,
        }
        if self.data_dir is None and not any(explicit.values()):
            return None
        files = {}
        for split in SPLITS:
            if explicit[split]:
                files[split] = explicit[split]
            elif self.data_dir is not None:
                files[split] = str(find_split_file(self.data_dir, split))
        return files


# --- Loading ------------------------------------------------------------------------------------------------


def load_raw_datasets(data_args: MnliDataArguments, cache_dir: str | None = None) -> datasets.DatasetDict:
    local = data_args.local_files()
    if local is not None:
        raw = {}
        for split, path in local.items():
            dataset, source = load_local_file(path, split=split, cache_dir=cache_dir)
            raw[split] = normalize_split(dataset, source)
    else:
        hint = (
            "data_dir: <folder with train.jsonl, validation_matched.jsonl, validation_mismatched.jsonl> "
            "(e.g. ../shared/data/mnli), or train_file / validation_matched_file / validation_mismatched_file."
        )
        hub = load_from_hub(data_args.dataset_name, data_args.dataset_config_name, cache_dir, hint)
        raw = {
            split: normalize_split(hub[split], f"{data_args.dataset_name}[{split}]") for split in SPLITS if split in hub
        }
    raw = datasets.DatasetDict(raw)
    if data_args.heldout_train_samples is not None:
        raw = hold_out_of_train(raw, data_args.heldout_train_samples, data_args.heldout_seed)
    return keep_first(raw, data_args.max_train_samples, data_args.max_eval_samples, EVAL_SPLITS)


def hold_out_of_train(raw: datasets.DatasetDict, n: int, seed: int) -> datasets.DatasetDict:
    """Split train into train and `heldout` (n pairs), and drop dev: a selection run never sees dev.

    Pairs are ordered by sha256('<seed>:<idx>') and the first n are held out, so the choice does not depend on the
    training seed, on max_train_samples or on the file's order of other pairs.
    """
    if "train" not in raw:
        raise DataError("heldout_train_samples needs a train split")
    train = raw["train"]
    if not 0 < n < len(train):
        raise DataError(
            f"heldout_train_samples must be between 1 and {len(train) - 1} "
            f"(the train split has {len(train)} pairs), got {n}"
        )
    ids = train["idx"]
    order = sorted(range(len(train)), key=lambda row: hashlib.sha256(f"{seed}:{ids[row]}".encode()).hexdigest())
    heldout_rows = sorted(order[:n])
    train_rows = sorted(order[n:])
    logger.info(
        "Held out %d of %d train pairs for selection (heldout_seed %d); dev is not evaluated", n, len(train), seed
    )
    return datasets.DatasetDict({"train": train.select(train_rows), HELDOUT_SPLIT: train.select(heldout_rows)})


# --- Preprocessing ------------------------------------------------------------------------------------------


def preprocess(
    raw: datasets.DatasetDict, tokenizer, data_args: MnliDataArguments, training_args
) -> datasets.DatasetDict:
    """Tokenize pairs (cached by datasets; once per process group), add a length column, sort eval splits by length."""
    return tokenize_splits(raw, tokenizer, TASK.input_fields, data_args, training_args, [*EVAL_SPLITS, HELDOUT_SPLIT])


# --- Metrics and predictions --------------------------------------------------------------------------------


@functools.cache
def nli_metric():
    return load_metric("nli")


def compute_metrics(eval_prediction) -> dict[str, float]:
    logits = (
        eval_prediction.predictions[0]
        if isinstance(eval_prediction.predictions, tuple)
        else eval_prediction.predictions
    )
    result = nli_metric().compute(
        predictions=np.argmax(logits, axis=-1), references=eval_prediction.label_ids, num_labels=3
    )
    return {"accuracy": result["accuracy"], "macro_f1": result["macro_f1"]}


def evaluate_split(
    trainer: Trainer, features: datasets.Dataset, raw: datasets.Dataset, split: str, output_dir: str
) -> tuple[dict, dict]:
    """Predict one eval split; write predictions_<split>.jsonl in the original order; return (metrics, tables)."""
    prefix = metric_prefix(split)  # eval_matched / eval_mismatched
    output = trainer.predict(features, metric_key_prefix=prefix)
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    probabilities = softmax(logits.astype(np.float64), axis=-1)
    predicted = probabilities.argmax(axis=-1)
    gold = np.asarray(features["label"])
    idx = np.asarray(features["idx"])
    order = np.argsort(idx, kind="stable")  # back to file order after length-sorted evaluation

    full = nli_metric().compute(predictions=predicted, references=gold, num_labels=3)
    metrics = dict(output.metrics)
    metrics[f"{prefix}_confusion_matrix"] = full["confusion_matrix"]
    genre_of_idx = dict(zip(raw["idx"], raw["genre"])) if "genre" in raw.column_names else None
    if genre_of_idx is not None:
        hits, counts = defaultdict(int), defaultdict(int)
        for i, p, g in zip(idx, predicted, gold):
            genre = genre_of_idx[int(i)]
            counts[genre] += 1
            hits[genre] += int(p == g)
        metrics[f"{prefix}_accuracy_by_genre"] = {genre: hits[genre] / counts[genre] for genre in sorted(counts)}

    rows = []
    for i in order:
        row = {
            "idx": int(idx[i]),
            "gold": int(gold[i]),
            "predicted": int(predicted[i]),
            "probabilities": [round(float(p), 6) for p in probabilities[i]],
        }
        if genre_of_idx is not None:
            row["genre"] = genre_of_idx[int(idx[i])]
        rows.append(row)
    if trainer.is_world_process_zero():
        run_outputs.write_jsonl(Path(output_dir) / f"predictions_{split}.jsonl", rows)

    confusion_rows = [[LABEL_NAMES[g], *full["confusion_matrix"][g]] for g in range(3)]
    sample_rows = [
        [r["idx"], LABEL_NAMES[r["gold"]], LABEL_NAMES[r["predicted"]], max(r["probabilities"])] for r in rows[:200]
    ]
    tables = {
        f"{prefix}/confusion_matrix": (["gold \\ predicted", *LABEL_NAMES], confusion_rows),
        f"{prefix}/predictions_sample": (["idx", "gold", "predicted", "confidence"], sample_rows),
    }
    return metrics, tables


# --- The run ------------------------------------------------------------------------------------------------


class MnliRun(ClassificationRun):
    """A GLUE classification run with MNLI's extras: two dev sets (matched, mismatched), the held-out split of train,
    the official files' column names and '-' labels (task_definitions/glue_tasks.py), per-genre accuracy and the
    confusion matrix."""

    name, task, data_arguments = "mnli", TASK, MnliDataArguments

    def load_data(self):
        return load_raw_datasets(self.data_args, cache_dir=self.model_args.cache_dir)

    def eval_splits(self, raw) -> list[str]:
        return [split for split in [*EVAL_SPLITS, HELDOUT_SPLIT] if split in raw]

    def compute_metrics(self):
        return compute_metrics

    def evaluate_split(self, trainer, features, raw, split):
        return evaluate_split(trainer, features, raw, split, self.training_args.output_dir)


def main(argv: list[str] | None = None) -> dict:
    return MnliRun.main(argv)
