"""Checks that run before a run writes anything: numbers that cannot train, and an output folder that already
holds a finished run, or files that are not a run of this pipeline.

    run_guard.check_numbers(training_args, data_args, ...)         # right after parsing
    run_guard.check_output_dir(training_args, run_args, resume_from)  # after resume_from_checkpoint is resolved
    run_guard.make_room(training_args, run_args, resume_from)      # just before the first file is written

A run is finished when its output folder holds all_results.json (the pipeline writes it last; studies use the same
test). A second run into that folder is refused unless it resumes (resume_from_checkpoint finds a checkpoint
there) or the recipe says `overwrite_output_dir: true`; then the old run is moved aside to
`<output_dir>.replaced-<UTC time>`, never deleted. transformers 5 removed TrainingArguments.overwrite_output_dir,
so it is a field of RunArguments here, with the meaning it had in the HF examples.

A folder that holds other files (a user's folder, the repository root) and none of the files our runs leave is
refused too, as the HF examples refuse a non-empty output folder: overwrite_output_dir writes into it anyway.
An empty folder, or one with hidden files only, is fine.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from pipelines.arguments import RecipeError
from pipelines.run_lock import LOCK_NAME

logger = logging.getLogger("pipelines")

FINISHED_MARKER = "all_results.json"
# Files that only a run of this pipeline (or a study job about to run) leaves; checkpoint-* folders count too.
RUN_FILES = {
    FINISHED_MARKER,
    "run_info.json",
    "recipe.yaml",
    "job_recipe.yaml",
    "study_job.json",
    "study_job.log",
    "trainer_state.json",
    "wandb",
}


class OutputDirError(RecipeError):
    """The output folder holds a finished run that this run would overwrite."""


@dataclass
class RunArguments:
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Replace a finished run in output_dir: the old run is moved to <output_dir>.replaced-<UTC time>."
        },
    )


# --- Numbers ------------------------------------------------------------------------------------------------


# field name -> (test, what the value must be). Applied to every parsed dataclass that has the field.
def _positive(value):
    return value > 0


def _at_least_zero(value):
    return value >= 0


def _fraction(value):  # [0, 1)
    return 0 <= value < 1


def _open_fraction(value):  # (0, 1)
    return 0 < value < 1


NUMBER_RULES = {
    "learning_rate": (_positive, "a positive number"),
    "num_train_epochs": (_at_least_zero, "0 or more"),
    "max_steps": (lambda v: v == -1 or v > 0, "a positive number of steps, or -1 to train num_train_epochs"),
    "per_device_train_batch_size": (_positive, "at least 1"),
    "per_device_eval_batch_size": (_positive, "at least 1"),
    "gradient_accumulation_steps": (_positive, "at least 1"),
    "warmup_steps": (_at_least_zero, "0 or more (a number of steps, or a fraction of the steps below 1)"),
    "weight_decay": (_at_least_zero, "0 or more"),
    "max_grad_norm": (_at_least_zero, "0 or more (0 turns clipping off)"),
    "adam_beta1": (_fraction, "in [0, 1)"),
    "adam_beta2": (_fraction, "in [0, 1)"),
    "adam_epsilon": (_positive, "a positive number"),
    "label_smoothing_factor": (_fraction, "in [0, 1)"),
    "logging_steps": (_positive, "positive"),
    "save_steps": (_positive, "positive"),
    "eval_steps": (_positive, "positive"),
    "save_total_limit": (_positive, "at least 1"),
    "max_seq_length": (_positive, "at least 1"),
    "doc_stride": (_positive, "at least 1"),
    "max_query_length": (_positive, "at least 1"),
    "max_answer_length": (_positive, "at least 1"),
    "n_best_size": (_positive, "at least 1"),
    "max_train_samples": (_positive, "at least 1 (leave it unset to use every example)"),
    "max_eval_samples": (_positive, "at least 1 (leave it unset to use every example)"),
    "heldout_fraction": (_open_fraction, "in (0, 1)"),
    "validation_split_percentage": (lambda v: 0 < v < 100, "in (0, 100)"),
    "mlm_probability": (_open_fraction, "in (0, 1)"),
    "vocab_size": (_positive, "at least 1"),
    "model_max_length": (_positive, "at least 1"),
}


def check_numbers(*arguments) -> None:
    """Every numeric argument that can be checked before training, in any of the parsed dataclasses; None is unset."""
    for instance in arguments:
        if instance is None:
            continue
        for name, (is_valid, expected) in NUMBER_RULES.items():
            value = getattr(instance, name, None)
            if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(value) or not is_valid(value):
                raise RecipeError(f"{name} is {value}; it must be {expected}")
        epochs, max_steps = getattr(instance, "num_train_epochs", None), getattr(instance, "max_steps", None)
        if epochs is not None and max_steps is not None and epochs == 0 and max_steps <= 0:
            raise RecipeError(
                "num_train_epochs is 0 and max_steps is not set: the run would train 0 steps. "
                "Set num_train_epochs or max_steps above 0."
            )


# --- The output folder --------------------------------------------------------------------------------------


def holds_finished_run(output_dir: str | os.PathLike) -> bool:
    return (Path(output_dir) / FINISHED_MARKER).is_file()


def foreign_files(output_dir: Path) -> list[str]:
    """The visible files of a folder that is not one of our runs (sorted); [] for a run, an empty or missing folder."""
    if not output_dir.is_dir():
        return []
    names = sorted(p.name for p in output_dir.iterdir() if not p.name.startswith("."))
    if any(name in RUN_FILES or name.startswith("checkpoint-") for name in names):
        return []
    return names


def check_writable(output_dir: Path) -> None:
    """The output folder, or the folder it will be created in, can be written: checked without creating anything."""
    existing = next(folder for folder in (output_dir, *output_dir.parents) if folder.exists())  # "." or "/" at worst
    if not existing.is_dir():
        raise OutputDirError(f"output_dir {output_dir} cannot be created: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):  # also false on a read-only filesystem, even for root
        raise OutputDirError(
            f"output_dir {output_dir} cannot be written: {existing} is read-only or not writable by this user"
        )


def check_output_dir(training_args, run_args: RunArguments, resume_from: str | None) -> None:
    """Refuse an output folder that cannot be written, that holds a finished run (unless resuming it or told to
    replace it), or that holds files that are not a run (unless told to write into it)."""
    output_dir = Path(training_args.output_dir)
    check_writable(output_dir)
    foreign = foreign_files(output_dir)
    if foreign and not run_args.overwrite_output_dir:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OutputDirError(
            f"{output_dir} is not empty and is not a run of this pipeline (it holds {shown}). Choose "
            "a new or empty output_dir, or set overwrite_output_dir: true (--overwrite_output_dir) to "
            "write into it anyway."
        )
    if foreign:
        logger.warning(
            "overwrite_output_dir: writing into %s, which holds other files (%s)", output_dir, ", ".join(foreign[:5])
        )
    if resume_from is not None or run_args.overwrite_output_dir or not holds_finished_run(output_dir):
        return
    raise OutputDirError(
        f"{output_dir} already holds a finished run ({FINISHED_MARKER}). Choose a new output_dir, or set "
        "overwrite_output_dir: true (--overwrite_output_dir) to move the old run aside and start again."
    )


def replaced_name(output_dir: Path) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = output_dir.with_name(f"{output_dir.name}.replaced-{stamp}")
    number = 1
    while target.exists():  # two replacements within a second
        number += 1
        target = output_dir.with_name(f"{output_dir.name}.replaced-{stamp}-{number}")
    return target


def make_room(training_args, run_args: RunArguments, resume_from: str | None) -> Path | None:
    """With overwrite_output_dir, move a finished run aside (main process); returns where it went."""
    output_dir = Path(training_args.output_dir)
    if resume_from is not None or not run_args.overwrite_output_dir or training_args.process_index != 0:
        return None
    if not holds_finished_run(output_dir):
        return None
    target = replaced_name(output_dir)
    target.mkdir()
    for entry in output_dir.iterdir():  # all but the lock this run holds (run_lock.py): the folder stays ours
        if entry.name != LOCK_NAME:
            os.replace(entry, target / entry.name)
    logger.warning("overwrite_output_dir: moved the finished run in %s to %s", output_dir, target)
    return target
