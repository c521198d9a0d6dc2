"""What the rest of the project knows about a task, in one place: each task module defines its `Task`s in `TASKS`.

    task = find_task("mnli")                       # by the name a run records in run_info.json ("task")
    task = task_of_run(run_info, recipe, config)   # the task of a finished run folder (QA: SQuAD or KorQuAD by its data)

The model card, `scripts/predict.py`, the reports, the inference pipelines and LoRA ask the task (its kind, label
names, input fields, metrics, prose) and never test its name. A new task is a module listed in `TASK_MODULES`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

# The modules that define tasks (a `TASKS` dict, and optionally `task_of_run(info, recipe)` for runs whose recorded
# name covers several tasks). The first module that knows a name wins: MNLI's own module before GLUE's.
TASK_MODULES = ("pipelines.tasks.mnli", "pipelines.tasks.qa", "pipelines.tasks.glue")

CLASSIFICATION, REGRESSION, EXTRACTIVE_QA = "classification", "regression", "extractive-qa"


@dataclass(frozen=True)
class Metric:
    """One result the model card reports (and puts in the model-index)."""

    key: str  # in all_results.json
    metric_type: str  # model-index metric type
    name: str  # shown on the Hub and in the card
    split: str
    percent_scale: bool  # accuracy is stored as a fraction (0-1), SQuAD EM/F1 already as percentages (0-100)


@dataclass(frozen=True)
class Task:
    """A task: its inputs and outputs, where its data is, its metrics, and what the model card says about it."""

    name: str  # as run_info.json records it
    kind: str  # CLASSIFICATION, REGRESSION or EXTRACTIVE_QA
    title: str  # e.g. "MNLI", "SST-2"
    description: str  # e.g. "Natural Language Inference" (the model-index task name)
    input_fields: tuple[str, ...]  # the text fields of one example, in the order the model reads them
    dataset_id: str
    dataset_config: str | None
    dataset_name: str
    language: str
    metrics: tuple[Metric, ...]
    full_eval_sizes: dict[str, int]
    tags: tuple[str, ...]
    intended_use: str
    limitations: tuple[str, ...]
    licence_note: str
    label_names: tuple[str, ...] = ()  # classification only, in label-id order
    data_note: str = ""  # a sentence for the card's data section
    example: tuple[str, ...] = ()  # one input for the card's code sample, one text per input field
    metric_note: str = ""  # e.g. KorQuAD's character-level F1
    # (dataset, LocalFile) -> the split with the task's columns, label ids and idx: reports read example texts with it
    normalize: Callable | None = field(default=None, compare=False)

    @property
    def is_qa(self) -> bool:
        return self.kind == EXTRACTIVE_QA

    @property
    def num_labels(self) -> int:
        """Outputs of the model head: the classes, one score for regression, start and end for QA."""
        return len(self.label_names) if self.kind == CLASSIFICATION else 1 if self.kind == REGRESSION else 2

    @property
    def hub_task_type(self) -> str:
        """The Hub's pipeline tag, also the model-index task type."""
        return "question-answering" if self.is_qa else "text-classification"

    @property
    def auto_class(self) -> str:
        return "AutoModelForQuestionAnswering" if self.is_qa else "AutoModelForSequenceClassification"

    @property
    def peft_task_type(self) -> str:
        """PEFT's name for the head."""
        return "QUESTION_ANS" if self.is_qa else "SEQ_CLS"

    @property
    def pipeline_task(self) -> str:
        """The transformers pipeline that serves the model (ours are registered by `import pipelines.inference`)."""
        if self.is_qa:
            return "extractive-question-answering"
        return "nli" if self.input_fields == ("premise", "hypothesis") else "text-classification"

    def label_name(self, value) -> str:
        """A label id as its name; anything else (a regression score, an answer) as text."""
        if isinstance(value, int) and 0 <= value < len(self.label_names):
            return self.label_names[value]
        return str(value)


class UnknownTaskError(ValueError):
    """A task name no module in TASK_MODULES defines."""


def _modules():
    return [importlib.import_module(name) for name in TASK_MODULES]


def find_task(name: str) -> Task:
    name = str(name).lower()
    for module in _modules():
        if name in module.TASKS:
            return module.TASKS[name]
    known = sorted({task for module in _modules() for task in module.TASKS})
    raise UnknownTaskError(f"Unknown task '{name}'; known tasks: {', '.join(known)}")


def task_of_run(info: dict | None, recipe: dict | None = None, config: dict | None = None) -> Task:
    """The task of a finished run: run_info.json's `task`, else the `finetuning_task` or head class of config.json."""
    info, recipe, config = info or {}, recipe or {}, config or {}
    name = str(info.get("task") or config.get("finetuning_task") or "").lower()
    if not name and (config.get("architectures") or [""])[0].endswith("ForQuestionAnswering"):
        name = "qa"
    for module in _modules():
        resolve = getattr(module, "task_of_run", None)
        if resolve is not None and name in getattr(module, "RUN_TASK_NAMES", ()):
            return resolve(info, recipe)
    return find_task(name)
