"""GLUE: every task of the benchmark with its official metric, selected by `task_name` (as in run_glue.py).

    accelerate launch scripts/run_glue.py configs/glue/sst2_minilm_cpu.yaml
    accelerate launch scripts/run_glue.py --task_name cola --model_name_or_path minilm --output_dir outputs/glue/cola

| task  | inputs                 | labels                             | metric                    |
|-------|------------------------|------------------------------------|---------------------------|
| cola  | sentence               | unacceptable, acceptable           | Matthews correlation      |
| sst2  | sentence               | negative, positive                 | accuracy                  |
| mrpc  | sentence1, sentence2   | not_equivalent, equivalent         | F1 and accuracy           |
| qqp   | question1, question2   | not_duplicate, duplicate           | F1 and accuracy           |
| stsb  | sentence1, sentence2   | a similarity score 0-5 (regression) | Pearson and Spearman      |
| mnli  | premise, hypothesis    | entailment, neutral, contradiction | accuracy (matched, mismatched) |
| qnli  | question, sentence     | entailment, not_entailment         | accuracy                  |
| rte   | sentence1, sentence2   | entailment, not_entailment         | accuracy                  |
| wnli  | sentence1, sentence2   | not_entailment, entailment         | accuracy                  |

Data: the Hub (`nyu-mll/glue`, the task's config) or local `train_file` / `validation_file` (.jsonl/.json/.csv/
.tsv/.parquet) with GLUE's column names and `label` (an id, a label name, or the score for STS-B). MNLI here reads
one local validation file (as matched); scripts/run_mnli.py is its full entry point (both dev sets, official files).
A task is a `Task` in `TASKS` below (from `glue_task`); the run is `GlueRun` through pipelines/run.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
from scipy.special import softmax
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

from pipelines import model_loading, run_outputs
from pipelines.arguments import RecipeError
from pipelines.data_files import load_from_hub, load_local_file
from pipelines.metrics import load_metric
from pipelines.run import TaskRun, metric_prefix
from pipelines.task_definitions.base import CLASSIFICATION, REGRESSION, Task, find_task
from pipelines.task_definitions.glue_tasks import GLUE_TASK_NAMES, normalize_split  # noqa: F401 (this module's API)
from pipelines.task_definitions.glue_tasks import GLUE_TASKS as TASKS  # noqa: F401

logger = logging.getLogger("pipelines")


@dataclass
class ClassificationDataArguments:
    """What every text-classification run (GLUE, MNLI) reads of its data; a task's dataclass adds where it is."""

    max_seq_length: int = field(default=128, metadata={"help": "Longer inputs are truncated (pairs: longest first)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep the first N training examples."})
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Keep the first N examples of each eval split."}
    )
    pad_to_max_length: bool = field(
        default=False, metadata={"help": "Pad every input to max_seq_length (slower; the HF examples' default)."}
    )
    sort_eval_by_length: bool = field(
        default=True,
        metadata={
            "help": "Evaluate in length order so eval batches barely pad; predictions are written "
            "in the original order."
        },
    )
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenization."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Tokenize again even when datasets has it cached."})


@dataclass
class GlueDataArguments(ClassificationDataArguments):
    task_name: str | None = field(default=None, metadata={"help": f"The GLUE task: {', '.join(GLUE_TASK_NAMES)}."})
    dataset_name: str = field(default="nyu-mll/glue", metadata={"help": "Hub data set (the task is its config)."})
    train_file: str | None = field(
        default=None, metadata={"help": "Local train file with GLUE's column names (instead of the Hub)."}
    )
    validation_file: str | None = field(
        default=None, metadata={"help": "Local validation file with GLUE's column names."}
    )

    def __post_init__(self):
        if self.task_name is None or self.task_name.lower() not in GLUE_TASK_NAMES:
            given = "no task_name" if self.task_name is None else f"task_name '{self.task_name}'"
            raise RecipeError(f"{given}: expected one of {', '.join(GLUE_TASK_NAMES)}")
        self.task_name = self.task_name.lower()


def eval_splits(task: Task) -> list[str]:
    return list(task.full_eval_sizes)


# --- Loading ------------------------------------------------------------------------------------------------


def load_raw_datasets(data_args: GlueDataArguments, task: Task, cache_dir: str | None = None) -> datasets.DatasetDict:
    splits = ["train", *eval_splits(task)]
    if data_args.train_file or data_args.validation_file:
        files = {"train": data_args.train_file, splits[1]: data_args.validation_file}
        raw = {}
        for split, path in files.items():
            if path:
                dataset, source = load_local_file(path, split=split, cache_dir=cache_dir)
                raw[split] = normalize_split(dataset, source, task)
    else:
        hint = f"train_file / validation_file with the columns {', '.join(task.input_fields)}, label."
        hub = load_from_hub(data_args.dataset_name, task.name, cache_dir, hint)
        raw = {
            split: normalize_split(hub[split], f"{data_args.dataset_name}[{split}]", task)
            for split in splits
            if split in hub
        }
    return keep_first(
        datasets.DatasetDict(raw), data_args.max_train_samples, data_args.max_eval_samples, eval_splits(task)
    )


def keep_first(
    raw: datasets.DatasetDict, train_samples: int | None, eval_samples: int | None, eval_split_names
) -> datasets.DatasetDict:
    """max_train_samples / max_eval_samples: the first examples of train and of each eval split."""
    if "train" in raw and train_samples is not None:
        raw["train"] = raw["train"].select(range(min(train_samples, len(raw["train"]))))
    for split in eval_split_names:
        if split in raw and eval_samples is not None:
            raw[split] = raw[split].select(range(min(eval_samples, len(raw[split]))))
    return raw


# --- Preprocessing ------------------------------------------------------------------------------------------


def tokenize_splits(
    raw: datasets.DatasetDict, tokenizer, fields: tuple[str, ...], data_args, training_args, sorted_splits: list[str]
) -> datasets.DatasetDict:
    """Tokenize one text or a pair (cached by datasets; once per process group), add a length column for grouping,
    and sort `sorted_splits` by length when data_args.sort_eval_by_length (evaluation then barely pads)."""
    padding = "max_length" if data_args.pad_to_max_length else False

    def tokenize(batch):
        texts = [batch[name] for name in fields]
        encoded = tokenizer(*texts, truncation=True, max_length=data_args.max_seq_length, padding=padding)
        encoded["length"] = [sum(mask) for mask in encoded["attention_mask"]]  # real tokens, padding excluded
        return encoded

    processed = {}
    with training_args.main_process_first(desc="tokenizing"):
        for split, dataset in raw.items():
            processed[split] = dataset.map(
                tokenize,
                batched=True,
                num_proc=data_args.preprocessing_num_workers,
                remove_columns=[c for c in dataset.column_names if c not in ("label", "idx")],
                load_from_cache_file=not data_args.overwrite_cache,
                desc=f"tokenizing {split}",
            )
    if data_args.sort_eval_by_length:
        for split in sorted_splits:
            if split in processed:
                processed[split] = processed[split].sort("length", reverse=True)
    return datasets.DatasetDict(processed)


# --- Metrics and predictions --------------------------------------------------------------------------------


def scores_of(predictions, task: Task) -> np.ndarray:
    """The model's outputs -> predicted label ids (classification) or scores (regression)."""
    logits = predictions[0] if isinstance(predictions, tuple) else predictions
    return logits[:, 0] if task.kind == REGRESSION else np.argmax(logits, axis=-1)


def metric_function(task: Task):
    """compute_metrics for the Trainer: the task's official GLUE metric."""
    metric = load_metric("glue", task.name)

    def compute_metrics(eval_prediction) -> dict[str, float]:
        return metric.compute(
            predictions=scores_of(eval_prediction.predictions, task), references=eval_prediction.label_ids
        )

    return compute_metrics


def evaluate_split(trainer, features: datasets.Dataset, split: str, task: Task, output_dir: str) -> tuple[dict, dict]:
    """Predict one eval split; write predictions_<split>.jsonl in file order; return (metrics, W&B tables).

    Rows: idx, gold, predicted and (classification) every label's probability, or (regression) the absolute error.
    """
    prefix = metric_prefix(split)
    output = trainer.predict(features, metric_key_prefix=prefix)
    logits = (output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions).astype(np.float64)
    gold, idx = np.asarray(features["label"]), np.asarray(features["idx"])
    rows = []
    for i in np.argsort(idx, kind="stable"):  # back to file order after length-sorted evaluation
        if task.kind == REGRESSION:
            predicted = float(logits[i, 0])
            # Not rounded: an undertrained model's scores can differ in the 6th decimal only.
            rows.append(
                {
                    "idx": int(idx[i]),
                    "gold": round(float(gold[i]), 6),
                    "predicted": predicted,
                    "absolute_error": abs(predicted - float(gold[i])),
                }
            )
        else:
            probabilities = softmax(logits[i])
            rows.append(
                {
                    "idx": int(idx[i]),
                    "gold": int(gold[i]),
                    "predicted": int(probabilities.argmax()),
                    "probabilities": [round(float(p), 6) for p in probabilities],
                }
            )
    if trainer.is_world_process_zero():
        run_outputs.write_jsonl(Path(output_dir) / f"predictions_{split}.jsonl", rows)
    sample = [[r["idx"], task.label_name(r["gold"]), task.label_name(r["predicted"])] for r in rows[:200]]
    return dict(output.metrics), {f"{prefix}/predictions_sample": (["idx", "gold", "predicted"], sample)}


# --- The run ------------------------------------------------------------------------------------------------


class ClassificationRun(TaskRun):
    """A text-classification (or regression) run of one GLUE task; MNLI adds its extras (tasks/mnli.py)."""

    distills = True  # `teacher:` in the recipe (pipelines/distillation.py)

    def eval_splits(self, raw) -> list[str]:
        return [split for split in eval_splits(self.task) if split in raw]

    def load_model(self, tokenizer):
        names = self.task.label_names
        labels = {"id2label": dict(enumerate(names)), "label2id": {name: i for i, name in enumerate(names)}}
        return model_loading.load_model(
            self.model_args,
            AutoModelForSequenceClassification,
            tokenizer,
            max_seq_length=self.data_args.max_seq_length,
            num_labels=self.task.num_labels,
            finetuning_task=self.task.name,
            **(labels if self.task.kind == CLASSIFICATION else {"problem_type": "regression"}),
        )

    def preprocess(self, raw, tokenizer):
        return tokenize_splits(
            raw, tokenizer, self.task.input_fields, self.data_args, self.training_args, self.eval_splits(raw)
        )

    def describe(self, raw, features):
        return {
            "train_examples": len(raw["train"]) if "train" in raw else 0,
            "eval_examples": {split: len(raw[split]) for split in self.eval_splits(raw)},
        }

    def compute_metrics(self):
        """compute_metrics for the Trainer."""
        return metric_function(self.task)

    def trainer_options(self, features, tokenizer):
        return {
            "train_dataset": features.get("train"),
            "eval_dataset": {split.replace("validation_", ""): features[split] for split in self.eval_splits(features)},
            # Multiples of 8 suit GPU tensor cores; on CPU they only add padding.
            "data_collator": DataCollatorWithPadding(
                tokenizer, pad_to_multiple_of=None if self.training_args.use_cpu else 8
            ),
            "compute_metrics": self.compute_metrics(),
        }

    def evaluate_split(self, trainer, features, raw, split: str) -> tuple[dict, dict]:
        return evaluate_split(trainer, features, split, self.task, self.training_args.output_dir)

    def evaluate(self, trainer, raw, features):
        all_metrics, tables = {}, {}
        for split in self.eval_splits(raw):
            metrics, split_tables = self.evaluate_split(trainer, features[split], raw[split], split)
            all_metrics.update(metrics)
            tables.update(split_tables)
            trainer.log_metrics(split, {k: v for k, v in metrics.items() if not isinstance(v, (list, dict))})
        return all_metrics, tables


class GlueRun(ClassificationRun):
    data_arguments = GlueDataArguments

    def __init__(self, argv: list[str] | None = None):
        super().__init__(argv)
        self.task = find_task(self.data_args.task_name)
        self.name = self.task.name

    def load_data(self):
        return load_raw_datasets(self.data_args, self.task, cache_dir=self.model_args.cache_dir)


def main(argv: list[str] | None = None) -> dict:
    return GlueRun.main(argv)
