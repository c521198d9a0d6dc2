"""The one reader of a finished run's output folder: model cards, scripts/predict.py and the Hub push read it here.

    run = RunFolder.read("outputs/mnli/minilm_cpu")
    run.task, run.results["eval_matched_accuracy"], run.setting("learning_rate"), run.eval_counts

What it reads: run_info.json (task, model, parameters, hardware, versions), all_results.json (the metrics),
recipe.yaml (hyperparameters), training_args.json when present (the values the recipe left at their defaults),
log_history.json (the training curve) and config.json (the architecture). Reports read runs from W&B as well as
from folders, and keep their own `reports.Run` for that.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipelines.errors import UserInputError
from pipelines.task_definitions.base import Task, task_of_run


class RunFolderError(UserInputError, ValueError):
    """A run folder that cannot be read: a file missing or unreadable; the message names it."""


def read_json(path: Path, required: bool = True):
    if not path.is_file():
        if required:
            raise RunFolderError(f"{path} not found: is {path.parent} the output folder of a finished run?")
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise RunFolderError(f"{path}: not valid JSON ({error})") from error


@dataclass
class RunFolder:
    folder: Path
    info: dict
    results: dict
    recipe: dict
    training_args: dict
    history: list
    config: dict

    @classmethod
    def read(cls, folder: str | Path, finished: bool = True) -> "RunFolder":
        """finished=False: only config.json is required (a model folder without run files, for inference)."""
        folder = Path(folder)
        info = read_json(folder / "run_info.json", required=finished) or {}
        recipe_path = folder / "recipe.yaml"
        recipe = (
            yaml.safe_load(recipe_path.read_text(encoding="utf-8")) if recipe_path.is_file() else info.get("recipe", {})
        )
        return cls(
            folder=folder,
            info=info,
            results=read_json(folder / "all_results.json", required=finished) or {},
            recipe=recipe or {},
            training_args=read_json(folder / "training_args.json", required=False) or {},
            history=read_json(folder / "log_history.json", required=False) or [],
            config=read_json(folder / "config.json"),
        )

    @property
    def task(self) -> Task:
        return task_of_run(self.info, self.recipe, self.config)

    @property
    def train_count(self) -> int | None:
        """Training examples (MNLI pairs, QA questions, pretraining blocks): run_info's train_examples."""
        return self.info.get("train_examples") or self._qa_counts_before_2026_12().get("train")

    @property
    def eval_counts(self) -> dict[str, int]:
        """Evaluation examples per split: run_info's eval_examples."""
        qa_counts = self._qa_counts_before_2026_12()
        return self.info.get("eval_examples") or {name: n for name, n in qa_counts.items() if name != "train"}

    def _qa_counts_before_2026_12(self) -> dict[str, int]:
        # QA runs recorded before 2026-12-02 kept their counts only under data.splits.<split>.questions.
        splits = (self.info.get("data") or {}).get("splits") or {}
        return {name: split["questions"] for name, split in splits.items() if "questions" in split}

    @property
    def heldout(self) -> bool:
        """True when the evaluation questions were split off one file by article (KorQuAD here), not an official
        split."""
        return bool((self.info.get("data") or {}).get("heldout"))

    def setting(self, name: str, default=None):
        """A hyperparameter as the run used it: the recipe's value, else the saved training arguments' value."""
        if name in self.recipe:
            return self.recipe[name]
        return self.training_args.get(name, default)

    @property
    def custom_code(self) -> list[str]:
        """The .py files the config's auto_map points to (our own model classes), sorted."""
        auto_map = self.config.get("auto_map") or {}
        references = [r for value in auto_map.values() for r in (value if isinstance(value, list) else [value]) if r]
        return sorted({r.split("--")[-1].rsplit(".", 1)[0] + ".py" for r in references})
