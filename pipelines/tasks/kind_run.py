"""The run of any task whose kind defines the training steps (pipelines/task_definitions/base.py,
`TaskKind.preprocess` and after): the task's data from local files, its kind's model head, features, collator,
metrics and prediction lines, and pipelines/run.py's sequence for the rest (checkpoints, resume, run_info.json,
W&B, the model card's files).

    KindRun.main(["--task_name", "toy_tags", "--data_dir", "data/toy", "--model_name_or_path", "minilm", ...])

The task must be known to `find_task` in this process: a module in TASK_MODULES, or a `register_task` call before
the run (tests/test_toy_task.py registers a token-classification task defined in the test itself).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import datasets
import transformers

from pipelines import model_loading, run_outputs
from pipelines.data_files import find_split_file, load_local_file
from pipelines.run import TaskRun, metric_prefix
from pipelines.task_definitions.base import find_task


@dataclass
class TaskDataArguments:
    task_name: str = field(metadata={"help": "A registered task whose kind defines the training steps."})
    data_dir: str = field(
        metadata={"help": "Folder with train.<suffix> and one file per eval split of the task (.jsonl, .csv, ...)."}
    )
    max_seq_length: int = field(default=128, metadata={"help": "Longer inputs are truncated."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep the first N training examples."})
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Keep the first N examples of each eval split."}
    )


class KindRun(TaskRun):
    data_arguments = TaskDataArguments

    def __init__(self, argv: list[str] | None = None):
        super().__init__(argv)
        self.task = find_task(self.data_args.task_name)
        self.name = self.task.name
        self.kind = self.task.behaviour

    def eval_splits(self, raw) -> list[str]:
        return [split for split in self.task.full_eval_sizes if split in raw]

    def load_data(self):
        """train and the task's eval splits from data_dir, each through task.normalize when the task has one."""
        raw = {}
        for split in ["train", *self.task.full_eval_sizes]:
            dataset, source = load_local_file(find_split_file(self.data_args.data_dir, split), split=split)
            raw[split] = self.task.normalize(dataset, source) if self.task.normalize else dataset
            limit = self.data_args.max_train_samples if split == "train" else self.data_args.max_eval_samples
            if limit is not None:
                raw[split] = raw[split].select(range(min(limit, len(raw[split]))))
        return datasets.DatasetDict(raw)

    def load_model(self, tokenizer):
        return model_loading.load_model(
            self.model_args,
            getattr(transformers, self.task.auto_class),
            tokenizer,
            max_seq_length=self.data_args.max_seq_length,
            **self.kind.model_config(self.task),
        )

    def preprocess(self, raw, tokenizer):
        with self.training_args.main_process_first(desc="tokenizing"):
            return datasets.DatasetDict(
                {
                    split: self.kind.preprocess(self.task, dataset, tokenizer, self.data_args.max_seq_length)
                    for split, dataset in raw.items()
                }
            )

    def describe(self, raw, features):
        return {
            "train_examples": len(raw["train"]),
            "eval_examples": {split: len(raw[split]) for split in self.eval_splits(raw)},
        }

    def trainer_options(self, features, tokenizer):
        return {
            "train_dataset": features["train"],
            "eval_dataset": {split.replace("validation_", ""): features[split] for split in self.eval_splits(features)},
            "data_collator": self.kind.data_collator(tokenizer),
            "compute_metrics": self.kind.compute_metrics(self.task),
        }

    def evaluate(self, trainer, raw, features):
        """Each eval split: its metrics, and predictions_<split>.jsonl with the kind's lines."""
        all_metrics, tables = {}, {}
        for split in self.eval_splits(raw):
            output = trainer.predict(features[split], metric_key_prefix=metric_prefix(split))
            rows = self.kind.prediction_rows(self.task, output, raw[split], features[split])
            if trainer.is_world_process_zero():
                run_outputs.write_jsonl(Path(self.training_args.output_dir) / f"predictions_{split}.jsonl", rows)
            all_metrics.update(output.metrics)
            trainer.log_metrics(split, output.metrics)
        return all_metrics, tables


def main(argv: list[str] | None = None) -> dict:
    return KindRun.main(argv)
