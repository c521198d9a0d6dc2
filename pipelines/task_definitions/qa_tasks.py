"""The extractive-QA tasks, SQuAD v1.1 and KorQuAD 1.0: what the model card, predict.py and the reports know of them.

Only definitions (no training code), so reading a run's task is light; the run is pipelines/tasks/qa.py.
"""

from __future__ import annotations

import json

from pipelines.task_definitions.base import EXTRACTIVE_QA, Metric, Task

_QA_LIMITATION = (
    "Extractive: the answer is always a span of the given context, even when the context has no answer "
    "(SQuAD v1.1 / KorQuAD 1.0 have no unanswerable questions)."
)
_WINDOWS = (
    "only; contexts longer than one window are read in overlapping windows, "
    "and answers longer than 30 tokens are never predicted."
)
_QA_USE = "paragraph (reading comprehension), as in Wikipedia-style QA."
SQUAD = Task(
    name="squad",
    kind=EXTRACTIVE_QA,
    title="SQuAD v1.1",
    description="Extractive Question Answering",
    input_fields=("question", "context"),
    dataset_id="rajpurkar/squad",
    dataset_config=None,
    dataset_name="SQuAD v1.1",
    language="en",
    metrics=(
        Metric("eval_exact_match", "exact_match", "Exact match", "validation", True),
        Metric("eval_f1", "f1", "F1", "validation", True),
    ),
    full_eval_sizes={"validation": 10570},
    tags=("extractive-qa", "squad"),
    example=("Where is the tower?", "The Eiffel Tower is in Paris."),
    intended_use=f"Finding the answer span to a question in a given English {_QA_USE}",
    limitations=(_QA_LIMITATION, f"English {_WINDOWS}"),
    licence_note="SQuAD v1.1 is released under CC BY-SA 4.0.",
)
KORQUAD = Task(
    name="korquad",
    kind=EXTRACTIVE_QA,
    title="KorQuAD 1.0",
    description="Extractive Question Answering",
    input_fields=("question", "context"),
    dataset_id="KorQuAD/squad_kor_v1",
    dataset_config=None,
    dataset_name="KorQuAD 1.0",
    language="ko",
    metrics=(
        Metric("eval_exact_match", "exact_match", "Exact match", "validation", True),
        Metric("eval_f1", "f1", "F1 (character-level)", "validation", True),
    ),
    full_eval_sizes={"validation": 5774},
    tags=("extractive-qa", "korquad"),
    example=("어디에 있나요?", "에펠탑은 파리에 있다."),
    intended_use=f"Finding the answer span to a question in a given Korean {_QA_USE}",
    limitations=(_QA_LIMITATION, f"Korean {_WINDOWS}"),
    licence_note="KorQuAD 1.0 is released under CC BY-ND 2.0 KR: check its terms before redistributing derived work.",
    metric_note="F1 here is the official KorQuAD 1.0 metric: **character-level** F1 over the answer string (SQuAD's F1 "
    "counts words). The two are not comparable: character-level F1 gives partial credit within Korean words, "
    "so it is higher than a word-level F1 of the same answers.",
)
TASKS = {"squad": SQUAD, "korquad": KORQUAD}
RUN_TASK_NAMES = ("qa", "squad", "korquad")  # a QA run records "qa"; its data says which benchmark


def task_of_run(info: dict, recipe: dict) -> Task:
    """SQuAD or KorQuAD, from where the run's data came from (KorQuAD's F1 is character-level)."""
    where = [info.get("task"), info.get("metric"), json.dumps(info.get("data", ""))]
    where += [
        recipe.get(key) for key in ("metric", "dataset_name", "heldout_from_file", "train_file", "validation_file")
    ]
    return KORQUAD if "korquad" in " ".join(str(w) for w in where).lower() else SQUAD
