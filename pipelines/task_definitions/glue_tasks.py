"""The GLUE tasks, MNLI among them: their definitions and how one split of their data is checked (label names to ids,
texts present), for the model card, predict.py, the reports and the runs (tasks/glue.py, tasks/mnli.py).

Only definitions and data checks (no training code), so reading a run's task is light.
"""

from __future__ import annotations

import logging
import math

import datasets
import numpy as np

from pipelines.data_files import DataError, LocalFile, label_id, require_columns
from pipelines.task_definitions.base import CLASSIFICATION, REGRESSION, Metric, Task, find_task

logger = logging.getLogger("pipelines")

LICENCE_NOTE = "GLUE's data sets come under their own licences: see gluebenchmark.com and each data set's page."
METRIC_NAMES = {
    "accuracy": "Accuracy",
    "f1": "F1",
    "matthews_correlation": "Matthews correlation",
    "pearson": "Pearson correlation",
    "spearmanr": "Spearman correlation",
}


def glue_task(
    name: str,
    title: str,
    description: str,
    fields: tuple[str, ...],
    labels: tuple[str, ...] | None,
    metrics: tuple[str, ...],
    validation_size: int,
    example: tuple[str, ...],
    use: str,
) -> Task:
    """A GLUE task with one validation split; labels None means regression (STS-B)."""
    return Task(
        name=name,
        kind=REGRESSION if labels is None else CLASSIFICATION,
        title=title,
        description=description,
        input_fields=fields,
        label_names=labels or (),
        dataset_id="nyu-mll/glue",
        dataset_config=name,
        dataset_name=f"GLUE {title}",
        language="en",
        # Accuracy and F1 are fractions (shown as %); correlations are shown as they are.
        metrics=tuple(
            Metric(f"eval_{m}", m, METRIC_NAMES[m], "validation", m in ("matthews_correlation", "pearson", "spearmanr"))
            for m in metrics
        ),
        full_eval_sizes={"validation": validation_size},
        tags=(name, "glue"),
        example=example,
        data_note="GLUE's test labels are hidden, so the validation split serves as the test set, as is usual.",
        intended_use=f"{use}, for English text like {title}'s.",
        limitations=("English only; it knows this one task's labels and nothing else.",),
        licence_note=LICENCE_NOTE,
        normalize=lambda dataset, source: normalize_split(dataset, source, find_task(name)),
    )


GLUE_TASKS = {
    task.name: task
    for task in (
        glue_task(
            "cola",
            "CoLA",
            "Linguistic Acceptability",
            ("sentence",),
            ("unacceptable", "acceptable"),
            ("matthews_correlation",),
            1043,
            ("The book was read by me.",),
            "Judging whether a sentence is grammatical",
        ),
        glue_task(
            "sst2",
            "SST-2",
            "Sentiment Analysis",
            ("sentence",),
            ("negative", "positive"),
            ("accuracy",),
            872,
            ("A gripping, beautifully acted film.",),
            "Classifying the sentiment of a sentence as positive or negative",
        ),
        glue_task(
            "mrpc",
            "MRPC",
            "Paraphrase Detection",
            ("sentence1", "sentence2"),
            ("not_equivalent", "equivalent"),
            ("f1", "accuracy"),
            408,
            ("He said it would rain.", "He predicted rain."),
            "Telling whether two sentences are paraphrases",
        ),
        glue_task(
            "qqp",
            "QQP",
            "Duplicate Question Detection",
            ("question1", "question2"),
            ("not_duplicate", "duplicate"),
            ("f1", "accuracy"),
            40430,
            ("How do I learn Python?", "What is the best way to learn Python?"),
            "Telling whether two questions ask the same thing",
        ),
        glue_task(
            "stsb",
            "STS-B",
            "Semantic Textual Similarity",
            ("sentence1", "sentence2"),
            None,
            ("pearson", "spearmanr"),
            1500,
            ("A man is playing a guitar.", "A man plays music."),
            "Scoring how similar two sentences are, from 0 to 5",
        ),
        glue_task(
            "qnli",
            "QNLI",
            "Question Answering NLI",
            ("question", "sentence"),
            ("entailment", "not_entailment"),
            ("accuracy",),
            5463,
            ("Where is the tower?", "The Eiffel Tower is in Paris."),
            "Telling whether a sentence answers a question",
        ),
        glue_task(
            "rte",
            "RTE",
            "Recognizing Textual Entailment",
            ("sentence1", "sentence2"),
            ("entailment", "not_entailment"),
            ("accuracy",),
            277,
            ("A man plays a guitar.", "A man makes music."),
            "Telling whether one sentence entails another",
        ),
        glue_task(
            "wnli",
            "WNLI",
            "Winograd NLI",
            ("sentence1", "sentence2"),
            ("not_entailment", "entailment"),
            ("accuracy",),
            71,
            ("The trophy did not fit in the case because it was too big.", "The trophy was too big."),
            "Resolving pronouns by entailment",
        ),
    )
}
GLUE_TASK_NAMES = (*GLUE_TASKS, "mnli")  # MNLI is run by its own module, tasks/mnli.py (run_mnli.py)


# --- MNLI: a GLUE task with two dev sets, the official files' column names and '-' labels -------------

# Column names of the official MultiNLI files, accepted as well as GLUE's.
COLUMN_ALIASES = {"sentence1": "premise", "sentence2": "hypothesis", "gold_label": "label"}
# GLUE drops pairs whose annotators had no majority; the official files mark them with this label.
NO_MAJORITY_LABEL = "-"
LABEL_NAMES = ["entailment", "neutral", "contradiction"]  # GLUE order

MNLI = Task(
    name="mnli",
    kind=CLASSIFICATION,
    title="MNLI",
    description="Natural Language Inference",
    input_fields=("premise", "hypothesis"),
    label_names=tuple(LABEL_NAMES),
    dataset_id="nyu-mll/glue",
    dataset_config="mnli",
    dataset_name="GLUE MNLI",
    language="en",
    metrics=(
        Metric("eval_matched_accuracy", "accuracy", "Matched accuracy", "validation_matched", False),
        Metric("eval_mismatched_accuracy", "accuracy", "Mismatched accuracy", "validation_mismatched", False),
    ),
    full_eval_sizes={"validation_matched": 9815, "validation_mismatched": 9832},
    tags=("natural-language-inference", "mnli", "glue"),
    example=("A man is playing a guitar.", "A man is making music."),
    data_note="Matched = the genres of the training data, mismatched = genres not seen in training. GLUE's test "
    "labels are hidden, so the validation splits serve as test sets, as is usual.",
    intended_use="Classifying whether a hypothesis follows from a premise (entailment), contradicts it, or neither "
    "(neutral), for English text like MNLI's genres; a building block for zero-shot classification and "
    "fact-checking research.",
    limitations=(
        "MNLI models learn annotation artefacts: negation words in the hypothesis predict contradiction, "
        "lexical overlap predicts entailment. Accuracy drops on data built to break these shortcuts (HANS).",
        "English only; three labels, so it cannot say 'unrelated' or 'partly true'.",
    ),
    normalize=lambda dataset, source: normalize_mnli_split(dataset, source),
    licence_note="MNLI's texts come from the Open American National Corpus and other sources under their own terms "
    "(see the GLUE and MultiNLI pages).",
)
TASKS = {"mnli": MNLI, **GLUE_TASKS}  # find_task: every GLUE task


# --- One split's rows ---------------------------------------------------------------------------------------


def normalize_split(dataset: datasets.Dataset, source: LocalFile | str, task: Task) -> datasets.Dataset:
    """Check every row (texts present, label valid), turn label names into ids, add idx when absent.

    Errors name the file and line (or example), and the field.
    """
    require_columns(dataset, [*task.input_fields, "label"], source)
    where = source.where if isinstance(source, LocalFile) else (lambda row: f"{source}, example {row}")
    label_ids = {name: i for i, name in enumerate(task.label_names)}
    labels = []
    for row, example in enumerate(dataset.select_columns([*task.input_fields, "label"])):
        for name in task.input_fields:
            text = example[name]
            if not isinstance(text, str) or not text.strip():
                shown = (
                    "empty" if text is None or isinstance(text, str) else f"{text!r} ({type(text).__name__}), not text"
                )
                raise DataError(f"{where(row)}: field '{name}' is {shown}")
        labels.append(parse_label(example["label"], task, label_ids, lambda: where(row)))
    if "idx" not in dataset.column_names:
        dataset = dataset.add_column("idx", list(range(len(dataset))))
    dataset = dataset.remove_columns("label").add_column("label", labels)
    if task.kind == REGRESSION:
        return dataset.cast_column("label", datasets.Value("float32"))
    return dataset.cast_column("label", datasets.ClassLabel(names=list(task.label_names)))


def parse_label(given, task: Task, label_ids: dict[str, int], where) -> int | float:
    if task.kind == REGRESSION:
        try:
            score = float(given)
        except (TypeError, ValueError):
            score = math.nan
        if isinstance(given, bool) or not math.isfinite(score):
            raise DataError(f"{where()}: field 'label' is {given!r}; expected a similarity score (a number)")
        return score
    label = label_id(given, label_ids)
    if label is None:
        ids = ", ".join(str(i) for i in range(len(task.label_names)))
        raise DataError(
            f"{where()}: field 'label' is {given!r}; expected {ids} or one of {', '.join(task.label_names)}"
        )
    return label


def normalize_mnli_split(dataset: datasets.Dataset, source: LocalFile | str) -> datasets.Dataset:
    """Rename official column names, turn label names into ids, check every row, add idx when absent.

    Errors name the file and line (or example), and the field.
    """
    renames = {
        old: new
        for old, new in COLUMN_ALIASES.items()
        if old in dataset.column_names and new not in dataset.column_names
    }
    if renames:
        dataset = dataset.rename_columns(renames)
    require_columns(dataset, ["premise", "hypothesis", "label"], source)
    where = source.where if isinstance(source, LocalFile) else (lambda row: f"{source}, example {row}")

    labels, keep = [], []
    label_ids = {name: i for i, name in enumerate(LABEL_NAMES)}
    for row, (premise, hypothesis, given) in enumerate(
        zip(dataset["premise"], dataset["hypothesis"], dataset["label"])
    ):
        if given == NO_MAJORITY_LABEL:
            continue
        label = label_id(given, label_ids)
        if label is None:
            shown = "empty" if given is None or (isinstance(given, float) and np.isnan(given)) else repr(given)
            raise DataError(
                f"{where(row)}: field 'label' is {shown}; expected 0, 1, 2 (GLUE order) "
                f"or one of {', '.join(LABEL_NAMES)}"
            )
        for name, text in (("premise", premise), ("hypothesis", hypothesis)):
            if text is None or (isinstance(text, str) and not text.strip()):
                raise DataError(f"{where(row)}: field '{name}' is empty")
            if not isinstance(text, str):
                raise DataError(f"{where(row)}: field '{name}' is {text!r} ({type(text).__name__}); expected text")
        labels.append(label)
        keep.append(row)
    if len(keep) < len(dataset):
        logger.info(
            "%s: dropped %d pairs without a majority label ('-'), as GLUE does",
            source if isinstance(source, str) else source.path,
            len(dataset) - len(keep),
        )
        dataset = dataset.select(keep)
    if "idx" not in dataset.column_names:
        dataset = dataset.add_column("idx", keep)
    dataset = dataset.remove_columns("label").add_column("label", labels)
    if len(dataset) == 0:
        raise DataError(f"{source if isinstance(source, str) else source.path}: no usable pairs")
    return dataset.cast_column("label", datasets.ClassLabel(names=LABEL_NAMES))
