"""Extractive question answering (SQuAD v1.1, KorQuAD 1.0) with BERT-style encoders.

A run goes through these functions in order:

1. `QADataArguments`           which data, and how questions are cut into token windows.
2. `load_raw_datasets`         Hub data set or local SQuAD-format JSON -> questions (one row each), plus a
                               description of the splits for the run's outputs.
3. `preprocess`                questions -> windows ("features"): train windows carry the answer's token
                               positions, eval windows carry `example_id` and character offsets (qa_windows.py).
4. `postprocess_qa_predictions` start/end logits of every window -> one answer text per question (+ n-best)
                               (qa_windows.py). Local SQuAD-format files are read by squad_files.py.
5. `score_predictions`         official EM/F1 (metric modules under pipelines/metrics), overall and per question.
6. `write_predictions`         predictions_{split}.json, nbest_predictions_{split}.json, predictions_{split}.jsonl.

A long context does not fit in one window of `max_seq_length` tokens, so it is split into overlapping
windows (`doc_stride` tokens shared by consecutive windows). Each question therefore has one or more
features, and post-processing gathers the candidate spans of all its windows.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from pipelines import model_loading, run_outputs, training
from pipelines.arguments import RecipeError
from pipelines.data_files import load_from_hub
from pipelines.metrics import load_metric, metric_path  # noqa: F401 (metric_path is part of this module's API)
from pipelines.qa_windows import (  # noqa: F401 (windows and answers are part of this module's API)
    EVAL_ONLY_COLUMNS,
    postprocess_qa_predictions,
    prepare_eval_features,
    prepare_train_features,
    preprocess,
)
from pipelines.run import TaskRun

# The task definitions live in qa_tasks (light to import); this module's API names them too.
from pipelines.task_definitions.qa_tasks import KORQUAD, RUN_TASK_NAMES, SQUAD, TASKS, task_of_run  # noqa: F401
from pipelines.tasks.squad_files import read_squad_file, split_by_article

logger = logging.getLogger(__name__)

# Official metrics, one `evaluate` module folder each under pipelines/metrics.
METRICS = ("squad_v1", "korquad_v1")

# Columns of the HF `rajpurkar/squad` schema, which local files are flattened into.
QA_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "title": datasets.Value("string"),
        "context": datasets.Value("string"),
        "question": datasets.Value("string"),
        "answers": {
            "text": datasets.List(datasets.Value("string")),
            "answer_start": datasets.List(datasets.Value("int32")),
        },
    }
)


# --------------------------------------------------------------------------------------------------------------
# 1. Arguments
# --------------------------------------------------------------------------------------------------------------


@dataclass
class QADataArguments:
    """Which QA data to use and how to turn it into model inputs.

    Give exactly one source: `dataset_name` (Hugging Face Hub), or local SQuAD-format JSON files
    (`train_file` and/or `validation_file`), or one local file split by article (`heldout_from_file`).
    """

    dataset_name: str | None = field(
        default=None, metadata={"help": "Hub data set: rajpurkar/squad or KorQuAD/squad_kor_v1."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Hub data set configuration, if any."})
    train_file: str | None = field(default=None, metadata={"help": "Local SQuAD-format JSON for training."})
    validation_file: str | None = field(default=None, metadata={"help": "Local SQuAD-format JSON for evaluation."})
    heldout_from_file: str | None = field(
        default=None,
        metadata={
            "help": "One local SQuAD-format JSON split into train and validation by article (title), for data "
            "sets without a separate train file (KorQuAD here). Every question of an article lands in the same split."
        },
    )
    heldout_fraction: float = field(
        default=0.1, metadata={"help": "Share of the articles of heldout_from_file that go to validation."}
    )
    heldout_seed: int = field(default=42, metadata={"help": "Seed of the article split (same seed, same split)."})
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N training questions (before windowing)."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N evaluation questions (before windowing)."}
    )
    max_seq_length: int = field(
        default=384, metadata={"help": "Tokens per window: question + context + special tokens."}
    )
    doc_stride: int = field(
        default=128,
        metadata={
            "help": "Context tokens shared by consecutive windows (the meaning in HF run_qa.py; the original BERT "
            "script used the name for the step between window starts)."
        },
    )
    max_query_length: int = field(
        default=64, metadata={"help": "Questions longer than this many tokens are cut (as in the original BERT)."}
    )
    max_answer_length: int = field(default=30, metadata={"help": "Longest answer span, in tokens, at prediction time."})
    n_best_size: int = field(
        default=20,
        metadata={"help": "Start and end candidates per window, and answers kept per question in the n-best list."},
    )
    pad_to_max_length: bool = field(
        default=False,
        metadata={"help": "Pad every window to max_seq_length. Default: no padding here; the collator pads per batch."},
    )
    sort_eval_by_length: bool = field(
        default=True,
        metadata={
            "help": "Order the eval windows by length so eval batches barely pad "
            "(post-processing does not depend on the order)."
        },
    )
    metric: str | None = field(
        default=None,
        metadata={"help": "squad_v1 or korquad_v1. Default: korquad_v1 if the data names KorQuAD, else squad_v1."},
    )
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenization."})
    overwrite_cache: bool = field(
        default=False, metadata={"help": "Re-tokenize instead of reusing the datasets cache."}
    )

    def __post_init__(self):
        local_files = [self.train_file, self.validation_file]
        if self.heldout_from_file is not None and (self.dataset_name or any(local_files)):
            raise RecipeError(
                "heldout_from_file gives both splits: leave dataset_name, train_file and validation_file unset."
            )
        if self.dataset_name is not None and any(local_files):
            raise RecipeError("Set either dataset_name (Hub) or train_file/validation_file (local JSON), not both.")
        if self.dataset_name is None and self.heldout_from_file is None and not any(local_files):
            raise RecipeError(
                "No QA data: set dataset_name (e.g. rajpurkar/squad), or train_file/validation_file "
                "(e.g. ../shared/data/squad_v1/dev.json), "
                "or heldout_from_file (e.g. ../shared/data/korquad_v1/dev.json)."
            )
        if not 0.0 < self.heldout_fraction < 1.0:
            raise RecipeError(f"heldout_fraction must be between 0 and 1, got {self.heldout_fraction}")
        # The tokenizer refuses a stride that leaves no room for new context tokens in a window.
        room_for_context = self.max_seq_length - self.max_query_length - 3  # [CLS] question [SEP] context [SEP]
        if self.doc_stride >= room_for_context:
            raise RecipeError(
                f"doc_stride ({self.doc_stride}) must be smaller than max_seq_length - max_query_length - 3 "
                f"({room_for_context}), the context tokens a window can hold."
            )
        if self.metric is None:
            names = " ".join(n for n in [self.dataset_name, self.heldout_from_file, *local_files] if n)
            self.metric = "korquad_v1" if "korquad" in names.lower() else "squad_v1"
        if self.metric not in METRICS:
            raise RecipeError(f"metric must be one of {', '.join(METRICS)}, got '{self.metric}'")


# --------------------------------------------------------------------------------------------------------------
# 2. Loading
# --------------------------------------------------------------------------------------------------------------


def load_raw_datasets(
    data_args: QADataArguments, cache_dir: str | None = None
) -> tuple[datasets.DatasetDict, dict[str, Any]]:
    """Load the questions: a DatasetDict with "train" and/or "validation" in the HF squad schema.

    Also returns a JSON-ready description of what was loaded (source, files, metric, per split the numbers of
    questions, paragraphs and articles, and for a held-out split the articles on each side), for the run to
    save beside its results. `max_train_samples`/`max_eval_samples` keep the first N questions.
    `cache_dir` is where Hub downloads go (local files are read directly).
    """
    description: dict[str, Any] = {"metric": data_args.metric}
    if data_args.dataset_name is not None:
        hint = (
            "leave dataset_name unset and set train_file/validation_file (e.g. validation_file: "
            "../shared/data/squad_v1/dev.json), or heldout_from_file to split one file by article "
            "(e.g. ../shared/data/korquad_v1/dev.json)."
        )
        raw = load_from_hub(data_args.dataset_name, data_args.dataset_config_name, cache_dir, hint)
        description.update(
            source="hub", dataset_name=data_args.dataset_name, dataset_config_name=data_args.dataset_config_name
        )
    elif data_args.heldout_from_file is not None:
        rows = read_squad_file(data_args.heldout_from_file)
        train_rows, validation_rows, split = split_by_article(rows, data_args.heldout_fraction, data_args.heldout_seed)
        raw = datasets.DatasetDict(
            train=datasets.Dataset.from_list(train_rows, features=QA_FEATURES),
            validation=datasets.Dataset.from_list(validation_rows, features=QA_FEATURES),
        )
        description.update(source="local", files={"heldout_from": data_args.heldout_from_file}, heldout=split)
    else:
        files = {"train": data_args.train_file, "validation": data_args.validation_file}
        files = {split_name: path for split_name, path in files.items() if path}
        raw = datasets.DatasetDict(
            {
                split_name: datasets.Dataset.from_list(read_squad_file(path), features=QA_FEATURES)
                for split_name, path in files.items()
            }
        )
        description.update(source="local", files=files)
        if len(raw) == 2:
            shared = set(raw["train"]["id"][:]) & set(raw["validation"]["id"][:])
            if shared:
                logger.warning("%d question ids are in both the train and the validation file.", len(shared))
            description["ids_in_both_splits"] = len(shared)

    limits = {"train": data_args.max_train_samples, "validation": data_args.max_eval_samples}
    description["splits"] = {}
    for split_name in list(raw):
        limit = limits.get(split_name)
        questions_available = len(raw[split_name])
        if limit is not None and limit < questions_available:
            raw[split_name] = raw[split_name].select(range(limit))
        description["splits"][split_name] = {
            "questions": len(raw[split_name]),
            "questions_available": questions_available,
            "paragraphs": len(set(raw[split_name]["context"][:])),
            "articles": len(set(raw[split_name]["title"][:])),
        }
    return raw, description


# --------------------------------------------------------------------------------------------------------------
# 5. Scoring
# --------------------------------------------------------------------------------------------------------------


def score_predictions(
    metric_name: str, predictions: dict[str, str], examples
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Official EM/F1 of the predictions against the gold answers of `examples`.

    Returns (metrics, per_example). metrics: exact_match and f1 (0-100), exact_count (questions answered
    exactly) and total. per_example, in the order of `examples`: {id, question, gold_answers, predicted,
    exact_match (0 or 100), f1 (0-100)}; the failures are the rows with exact_match 0. A question without a
    prediction is scored as the empty answer (0).
    """
    metric = load_metric(metric_name)  # the evaluate module in pipelines/metrics/<metric_name>
    ids = examples["id"][:]
    answers = examples["answers"][:]
    result = metric.compute(
        predictions=[{"id": i, "prediction_text": predictions.get(i, "")} for i in ids],
        references=[{"id": i, "answers": a} for i, a in zip(ids, answers)],
        per_example=True,
    )
    per_example = [
        {
            "id": i,
            "question": question,
            "gold_answers": a["text"],
            "predicted": predictions.get(i, ""),
            "exact_match": scores["exact_match"],
            "f1": scores["f1"],
        }
        for i, question, a, scores in zip(ids, examples["question"][:], answers, result.pop("per_example"))
    ]
    return result, per_example


# --------------------------------------------------------------------------------------------------------------
# 6. Writing
# --------------------------------------------------------------------------------------------------------------


def write_predictions(
    output_dir: str | Path,
    split: str,
    predictions: dict[str, str],
    nbest: dict[str, list[dict[str, Any]]],
    examples,
    per_example_scores: list[dict[str, Any]] | None = None,
) -> dict[str, str]:
    """Write predictions_{split}.json (id -> text), nbest_predictions_{split}.json and predictions_{split}.jsonl.

    The .jsonl file has one line per question, in the order of `examples`:
    {id, question, gold_answers, predicted, exact_match, f1} (scores from `score_predictions`, null without them).
    Comparison reports read this file. Returns the paths written.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "predictions": output_dir / f"predictions_{split}.json",
        "nbest": output_dir / f"nbest_predictions_{split}.json",
        "per_example": output_dir / f"predictions_{split}.jsonl",
    }
    # ensure_ascii=False keeps Korean answers readable in the files.
    paths["predictions"].write_text(json.dumps(predictions, ensure_ascii=False, indent=2), encoding="utf-8")
    paths["nbest"].write_text(json.dumps(nbest, ensure_ascii=False, indent=2), encoding="utf-8")
    scores_by_id = {row["id"]: row for row in per_example_scores or []}
    with paths["per_example"].open("w", encoding="utf-8") as lines:
        for example_id, question, answers in zip(examples["id"][:], examples["question"][:], examples["answers"][:]):
            scores = scores_by_id.get(example_id, {})
            line = {
                "id": example_id,
                "question": question,
                "gold_answers": answers["text"],
                "predicted": predictions.get(example_id, ""),
                "exact_match": scores.get("exact_match"),
                "f1": scores.get("f1"),
            }
            lines.write(json.dumps(line, ensure_ascii=False) + "\n")
    return {name: str(path) for name, path in paths.items()}


# --------------------------------------------------------------------------------------------------------------
# 7. The run
# --------------------------------------------------------------------------------------------------------------


@dataclass
class AnswerScoring:
    """What QA evaluation needs beside the logits: the questions, their windows, and how answers are picked and
    scored. Called with the logits of every window; keeps the latest answers for the prediction files."""

    examples: datasets.Dataset  # the questions
    features: datasets.Dataset  # their eval windows (example_id, offset_mapping), in the order of the logits
    data_args: QADataArguments
    latest: tuple | None = None  # (predictions, nbest, per_example) of the latest evaluation

    def __call__(self, start_logits, end_logits) -> dict[str, float]:
        predictions, nbest = postprocess_qa_predictions(
            self.examples,
            self.features,
            start_logits,
            end_logits,
            self.data_args.n_best_size,
            self.data_args.max_answer_length,
        )
        scores, per_example = score_predictions(self.data_args.metric, predictions, self.examples)
        self.latest = (predictions, nbest, per_example)
        return scores


class QuestionAnsweringTrainer(training.PipelineTrainer):
    """The Trainer whose `evaluate` turns the windows' logits into answers and scores them officially, as
    transformers' QA example (its QuestionAnsweringTrainer) does. So EM/F1 are logged at every evaluation (W&B,
    log_history.json) and `metric_for_best_model: f1` chooses the best checkpoint. (The Trainer's own
    compute_metrics needs labels, which eval windows have not.)"""

    def __init__(self, *args, answers: AnswerScoring | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.answers = answers

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        start = time.perf_counter()
        output = self.evaluation_loop(
            self.get_eval_dataloader(eval_dataset),
            description="Evaluation",
            prediction_loss_only=False,
            ignore_keys=ignore_keys,
            metric_key_prefix=metric_key_prefix,
        )
        start_logits, end_logits = output.predictions[:2]
        metrics = dict(output.metrics)
        metrics.update({f"{metric_key_prefix}_{k}": v for k, v in self.answers(start_logits, end_logits).items()})
        seconds = time.perf_counter() - start
        metrics.update(
            {
                f"{metric_key_prefix}_runtime": seconds,
                f"{metric_key_prefix}_samples_per_second": len(self.answers.examples) / seconds,  # questions
                f"{metric_key_prefix}_windows_per_second": output.num_samples / seconds,
            }
        )
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


def prediction_files(run_dir: str, answers: AnswerScoring, split: str = "validation") -> dict:
    """Write the latest evaluation's prediction files (main process); return its W&B tables."""
    predictions, nbest, per_example = answers.latest
    write_predictions(run_dir, split, predictions, nbest, answers.examples, per_example)
    failures = [row for row in per_example if row["exact_match"] == 0]
    columns = ["id", "question", "gold_answers", "predicted", "exact_match", "f1"]

    def table(rows):
        return columns, [[r[c] if c != "gold_answers" else " | ".join(r[c]) for c in columns] for r in rows[:200]]

    return {"eval/predictions_sample": table(per_example), "eval/failures_sample": table(failures)}


class QARun(TaskRun):
    name, task, data_arguments = "qa", SQUAD, QADataArguments  # SQuAD and KorQuAD share the head (LoRA's type)
    distills = True  # `teacher:` in the recipe (pipelines/distillation.py)

    def load_data(self):
        self.raw, self.description = load_raw_datasets(self.data_args, cache_dir=self.model_args.cache_dir)
        return self.raw

    def load_model(self, tokenizer):
        from transformers import AutoModelForQuestionAnswering

        # num_labels=2: the QA head's two outputs (start, end), whatever head the checkpoint was saved with.
        return model_loading.load_model(
            self.model_args,
            AutoModelForQuestionAnswering,
            tokenizer,
            max_seq_length=self.data_args.max_seq_length,
            num_labels=2,
        )

    def preprocess(self, raw, tokenizer):
        return preprocess(raw, tokenizer, self.data_args, self.training_args)

    def describe(self, raw, features):
        # Counts in the shape every task records (examples = questions), then QA's own: windows and the data.
        return {
            "train_examples": len(raw["train"]) if "train" in raw else 0,
            "eval_examples": {"validation": len(raw["validation"])} if "validation" in raw else {},
            "data": self.description,
            "metric": self.data_args.metric,
            "train_windows": len(features["train"]) if "train" in features else 0,
            "eval_windows": len(features["validation"]) if "validation" in features else 0,
        }

    def start_outputs(self, model, raw, features):
        info = super().start_outputs(model, raw, features)
        if self.training_args.process_index == 0:
            run_outputs.write_json(Path(self.training_args.output_dir) / "data_splits.json", self.description)
        return info

    def trainer_options(self, features, tokenizer):
        from transformers import DataCollatorWithPadding

        collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=None if self.training_args.use_cpu else 8)
        options = {
            "train_dataset": features.get("train"),
            "trainer_class": QuestionAnsweringTrainer,
            "data_collator": collator,
        }
        if "validation" in features:
            windows = features["validation"]
            extra = [c for c in EVAL_ONLY_COLUMNS if c in windows.column_names]  # post-processing's, not the model's
            options["eval_dataset"] = windows.remove_columns(extra)
            options["answers"] = AnswerScoring(self.raw["validation"], windows, self.data_args)
        return options

    def evaluate(self, trainer, raw, features):
        if "validation" not in features:
            return {}, {}
        metrics = trainer.evaluate()
        metrics["eval_metric"] = self.data_args.metric
        tables = {}
        if trainer.is_world_process_zero():
            tables = prediction_files(self.training_args.output_dir, trainer.answers)
        trainer.log_metrics("eval", metrics)
        return metrics, tables


def main(argv: list[str] | None = None) -> dict:
    return QARun.main(argv)
