"""What the rest of the project knows about a task, in one place: each task module defines its `Task`s in `TASKS`.

    task = find_task("mnli")                       # by the name a run records in run_info.json ("task")
    task = task_of_run(run_info, recipe, config)   # a finished run folder's task (QA: SQuAD or KorQuAD by its data)

The model card, `scripts/predict.py`, the reports, the inference pipelines and LoRA ask the task (its behaviour,
label names, input fields, metrics, prose) and never test its name. A new task is a module listed in
`TASK_MODULES` (or a `register_task` call); a new kind of task is a `TaskKind` subclass given as its `behaviour`.
A kind that also defines the training steps below (preprocess, data_collator, compute_metrics, prediction_rows)
trains through pipelines/tasks/kind_run.py with no run module of its own (tests/test_toy_task.py does that).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

from pipelines.errors import UserInputError

# The modules that define tasks (a `TASKS` dict, and optionally `task_of_run(info, recipe)` for runs whose recorded
# name covers several tasks). Definitions only, apart from the runs: reading a run's task imports no training code.
TASK_MODULES = ("pipelines.task_definitions.glue_tasks", "pipelines.task_definitions.qa_tasks")

CLASSIFICATION, REGRESSION, EXTRACTIVE_QA = "classification", "regression", "extractive-qa"


@dataclass(frozen=True)
class Metric:
    """One result the model card reports (and puts in the model-index)."""

    key: str  # in all_results.json
    metric_type: str  # model-index metric type
    name: str  # shown on the Hub and in the card
    split: str
    percent_scale: bool  # accuracy is stored as a fraction (0-1), SQuAD EM/F1 already as percentages (0-100)


# --- What a kind of task does ---------------------------------------------------------------------------------
# A kind owns the behaviour the rest of the project asks of a task: its model head, its inference pipeline and the
# line predict.py writes, the per-example score reports compare, and the scale of that score. A new kind is a
# subclass of TaskKind given to its Task (`Task(..., behaviour=MyKind())`); nothing else dispatches on kind names.


class TaskKind:
    name = ""
    auto_class = "AutoModelForSequenceClassification"
    hub_task_type = "text-classification"  # the Hub's pipeline tag, also the model-index task type
    peft_task_type = "SEQ_CLS"  # PEFT's name for the head
    pipeline_task = "text-classification"  # the transformers pipeline that serves the model
    percent_scale = False  # per-example scores (and the metrics) are fractions (0-1), or percentages (0-100)

    def num_labels(self, task: "Task") -> int:
        """Outputs of the model head."""
        return len(task.label_names)

    def augmented_fields(self, task: "Task") -> tuple[str, ...]:
        """The input fields that teacher-labelled augmentation rewrites (pipelines/distillation_augment.py)."""
        return task.input_fields

    def predictor(self, run, task: "Task", device=None, trust_remote_code: bool = False):
        """(a callable over an iterable of examples (dicts with the task's input fields), options to call it with)."""
        raise NotImplementedError

    def output_row(self, row: dict, prediction: dict) -> dict:
        """predict.py's output line: the input line plus the prediction."""
        raise NotImplementedError

    def example_score(self, row: dict) -> tuple | None:
        """One line of predictions_<split>.jsonl -> (example key, {score name: value}, correct), None when unscored."""
        raise NotImplementedError

    def shown(self, row: dict, task: "Task") -> tuple[str, str]:
        """(gold, predicted) of a predictions line as a report shows them (task None: as they are)."""
        show = task.label_name if task is not None else str
        return show(row["gold"]), show(row["predicted"])

    # What the model card says about using the model.

    def usage_code(self, example: str, max_length: int) -> str:
        """The card's code sample once `tokenizer` and `model` are loaded; `example` is the task's example input as
        Python literals (comma-separated), max_length the longest input the model reads."""
        raise NotImplementedError

    def pipeline_output(self, task: "Task") -> str:
        """What the kind's pipeline returns for one example, in the card's words."""
        raise NotImplementedError

    # How a run trains a task of this kind: pipelines/tasks/kind_run.py calls these. The built-in kinds train
    # through their own run modules (tasks/glue.py, mnli.py, qa.py), which have more options, and leave them out.

    def model_config(self, task: "Task") -> dict:
        """The head's settings for the model config (from_pretrained / from_config keywords)."""
        names = task.label_names
        return {
            "num_labels": self.num_labels(task),
            "id2label": dict(enumerate(names)),
            "label2id": {name: i for i, name in enumerate(names)},
            "finetuning_task": task.name,
        }

    def preprocess(self, task: "Task", dataset, tokenizer, max_seq_length: int):
        """One split of the task's data (datasets.Dataset, after task.normalize) -> the model's features."""
        raise NotImplementedError

    def data_collator(self, tokenizer):
        """Batches features for the Trainer."""
        raise NotImplementedError

    def compute_metrics(self, task: "Task"):
        """The Trainer's compute_metrics: EvalPrediction -> {metric: value}, keys as in task.metrics (unprefixed)."""
        raise NotImplementedError

    def prediction_rows(self, task: "Task", output, dataset, features) -> list[dict]:
        """Lines of predictions_<split>.jsonl from trainer.predict's output, one per example, each scored by
        `example_score`."""
        raise NotImplementedError


class Classification(TaskKind):
    name = CLASSIFICATION

    def predictor(self, run, task, device=None, trust_remote_code=False):
        from pipelines.inference import classification_pipeline

        return classification_pipeline(
            run.folder, task.input_fields, device=device, trust_remote_code=trust_remote_code
        ), {}

    def output_row(self, row, prediction):
        return {
            **row,
            "predicted_label": prediction["label"],
            "score": prediction["score"],
            "scores": prediction["scores"],
        }

    def example_score(self, row):
        if "gold" not in row or "predicted" not in row:
            return None
        correct = row["gold"] == row["predicted"]
        return row.get("idx", row.get("id")), {"accuracy": float(correct)}, correct

    def usage_code(self, example, max_length):
        return (
            f'inputs = tokenizer({example}, return_tensors="pt")\n'
            "with torch.no_grad():\n"
            "    probabilities = model(**inputs).logits.softmax(-1)[0]\n"
            "print({model.config.id2label[i]: round(float(p), 3) for i, p in enumerate(probabilities)})"
        )

    def pipeline_output(self, task):
        inputs = " and ".join(f"a {name}" for name in task.input_fields)
        return f"`[{{label, score}}]` for {inputs}"  # transformers' text-classification (pairs: text / text_pair)


REGRESSION_TOLERANCE = 0.5  # STS-B scores run 0-5; half a point counts as right for the paired tests


class Regression(Classification):
    name = REGRESSION

    def num_labels(self, task):
        return 1

    def predictor(self, run, task, device=None, trust_remote_code=False):
        from pipelines.inference import classification_pipeline

        return classification_pipeline(
            run.folder, task.input_fields, regression=True, device=device, trust_remote_code=trust_remote_code
        ), {}

    def output_row(self, row, prediction):
        return {**row, "predicted_score": prediction["score"]}

    def example_score(self, row):
        if "absolute_error" not in row:
            return None
        error = float(row["absolute_error"])  # "correct" = within REGRESSION_TOLERANCE of the gold score
        return row.get("idx", row.get("id")), {"absolute_error": error}, error <= REGRESSION_TOLERANCE

    def usage_code(self, example, max_length):
        return (
            f'inputs = tokenizer({example}, return_tensors="pt")\n'
            "with torch.no_grad():\n"
            "    print(float(model(**inputs).logits[0, 0]))"
        )


class ExtractiveQA(TaskKind):
    name = EXTRACTIVE_QA
    auto_class = "AutoModelForQuestionAnswering"
    hub_task_type = "question-answering"
    peft_task_type = "QUESTION_ANS"
    pipeline_task = "extractive-question-answering"  # ours (pipelines/inference.py): transformers 5.3 removed it
    percent_scale = True  # SQuAD/KorQuAD EM and F1 are 0-100

    def num_labels(self, task):
        return 2  # start and end

    def augmented_fields(self, task):
        return ("question",)  # the context stays as it is: the teacher's answer must be a span of it

    def predictor(self, run, task, device=None, trust_remote_code=False):
        from pipelines.inference import WindowSettings, question_answering_pipeline

        qa = question_answering_pipeline(run.folder, device=device, trust_remote_code=trust_remote_code)
        options = {"window": WindowSettings.for_model(qa.model, qa.tokenizer, **run.recipe)}
        options.update({k: run.recipe[k] for k in ("max_answer_length", "n_best_size") if run.recipe.get(k)})
        return qa, options

    def output_row(self, row, prediction):
        return {
            **row,
            "predicted_answer": prediction["answer"],
            "score": prediction["score"],
            "start": prediction["start"],
            "end": prediction["end"],
        }

    def example_score(self, row):
        if row.get("exact_match") is None or row.get("f1") is None:
            return None
        return row["id"], {"exact_match": float(row["exact_match"]), "f1": float(row["f1"])}, row["exact_match"] >= 100

    def shown(self, row, task):
        return " | ".join(row.get("gold_answers") or []), str(row["predicted"])

    def usage_code(self, example, max_length):
        return (
            f"question, context = {example}\n"
            'inputs = tokenizer(question, context, return_tensors="pt", truncation="only_second", '
            f"max_length={max_length})\n"
            "with torch.no_grad():\n"
            "    outputs = model(**inputs)\n"
            "start, end = int(outputs.start_logits.argmax()), int(outputs.end_logits.argmax())\n"
            'print(tokenizer.decode(inputs["input_ids"][0, start : end + 1]))'
        )

    def pipeline_output(self, task):
        inputs = " and ".join(f"a {name}" for name in task.input_fields)
        return f"`{{answer, score, start, end}}` for {inputs}"


KINDS = {kind.name: kind for kind in (Classification(), Regression(), ExtractiveQA())}


@dataclass(frozen=True)
class Task:
    """A task: its inputs and outputs, where its data is, its metrics, and what the model card says about it."""

    name: str  # as run_info.json records it
    kind: str  # CLASSIFICATION, REGRESSION, EXTRACTIVE_QA, or a new kind's name (then give `behaviour`)
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
    behaviour: TaskKind | None = field(default=None, compare=False)  # None: the built-in kind of that name

    def __post_init__(self):
        if self.behaviour is None:
            object.__setattr__(self, "behaviour", KINDS[self.kind])

    @property
    def num_labels(self) -> int:
        """Outputs of the model head: the classes, one score for regression, start and end for QA."""
        return self.behaviour.num_labels(self)

    @property
    def hub_task_type(self) -> str:
        return self.behaviour.hub_task_type

    @property
    def auto_class(self) -> str:
        return self.behaviour.auto_class

    @property
    def peft_task_type(self) -> str:
        return self.behaviour.peft_task_type

    @property
    def pipeline_task(self) -> str:
        """The transformers pipeline that serves the model (QA's is registered by `import pipelines.inference`)."""
        return self.behaviour.pipeline_task

    def label_name(self, value) -> str:
        """A label id as its name; anything else (a regression score, an answer) as text."""
        if isinstance(value, int) and 0 <= value < len(self.label_names):
            return self.label_names[value]
        return str(value)


_REGISTERED: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Make a task known to find_task / task_of_run without a module in TASK_MODULES (a plug-in, a test)."""
    _REGISTERED[task.name] = task
    return task


class UnknownTaskError(UserInputError, ValueError):
    """A task name no module in TASK_MODULES defines."""


def _modules():
    return [importlib.import_module(name) for name in TASK_MODULES]


def find_task(name: str) -> Task:
    name = str(name).lower()
    if name in _REGISTERED:
        return _REGISTERED[name]
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
