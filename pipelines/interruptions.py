"""How a run stops when it must stop early: on Ctrl-C or SIGTERM, or when a save fails.

Ctrl-C (SIGINT) and SIGTERM (what cluster schedulers send before they kill a job) do not kill the run mid-step:
StopOnSignal lets the current optimizer step finish, saves a checkpoint when the recipe saves checkpoints
(save_strategy is not "no"), stops training, and ends the run with RunInterrupted, whose message says how to
resume. A second Ctrl-C while it stops gets the default behaviour back (Ctrl-C twice interrupts at once); a SIGTERM
while it stops does not: `accelerate launch` answers Ctrl-C (and its own SIGTERM) by sending SIGTERM to the run at
once and SIGKILL 5 s later, and the run uses those seconds to finish the step and save. The handlers are installed
only while training runs; before and after it, Ctrl-C interrupts as usual.

A save that fails (full disk, a folder that cannot be written) raises SaveFailedError naming the path and the
newest complete checkpoint, which stays usable: a checkpoint counts as complete only once its trainer_state.json
is written, last (checkpoints.resolve_resume_checkpoint).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
from pathlib import Path

from safetensors import SafetensorError
from transformers import TrainerCallback

from pipelines.errors import RunStoppedError

logger = logging.getLogger("pipelines")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# What a failed write raises: OSError (open, mkdir), RuntimeError (torch.save), SafetensorError (model weights).
WRITE_ERRORS = (OSError, RuntimeError, SafetensorError)
MODEL_FILES = ("model.safetensors", "model.safetensors.index.json", "adapter/adapter_model.safetensors")


class RunInterrupted(Exception):
    """Training stopped on a signal; the CLI exits with 128 + signal_number."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.signal_number = signal_number


class SaveFailedError(RunStoppedError, RuntimeError):
    """Writing a checkpoint or the model failed; the message names the path."""


class StopOnSignal(TrainerCallback):
    """Turns SIGINT/SIGTERM into a checkpoint (when configured) and a clean stop at the end of the current step.

    In a distributed run every process must stop at the same step, so the flag goes through the accelerator's
    trigger, which all processes check together (one small all-reduce per step; none in a single process).
    """

    def __init__(self, trainer):
        self.trainer = trainer
        self.signal_number: int | None = None
        self.previous_handlers: dict[int, object] = {}

    def _on_signal(self, signal_number, frame):
        name = signal.Signals(signal_number).name
        if self.signal_number is not None:  # SIGTERM while stopping: the launcher passing on the same stop
            logger.warning("Received %s: already stopping after the current step", name)
            return
        self.signal_number = signal_number
        # A second Ctrl-C acts at once.
        signal.signal(signal.SIGINT, self.previous_handlers.pop(signal.SIGINT, signal.default_int_handler))
        logger.warning("Received %s: stopping after the current step", name)

    def _restore_handlers(self):
        for number, handler in self.previous_handlers.items():
            signal.signal(number, handler)
        self.previous_handlers = {}

    def on_train_begin(self, args, state, control, **kwargs):
        if threading.current_thread() is threading.main_thread():  # Python allows handlers only there
            self.previous_handlers = {number: signal.signal(number, self._on_signal) for number in STOP_SIGNALS}

    def _stop_requested(self, args) -> bool:
        if args.world_size <= 1:
            return self.signal_number is not None
        accelerator = self.trainer.accelerator
        if self.signal_number is not None:
            accelerator.set_trigger()
        if accelerator.check_trigger():
            self.signal_number = self.signal_number or signal.SIGTERM  # another process got the signal
            return True
        return False

    def on_step_end(self, args, state, control, **kwargs):
        if self._stop_requested(args):
            control.should_training_stop = True
            control.should_save = args.save_strategy != "no"
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self._restore_handlers()
        if self.signal_number is None:
            return
        # Raised here rather than returned so that the task's main does not go on to save and report an
        # unfinished run as finished (all_results.json marks a finished run).
        name = signal.Signals(self.signal_number).name
        output_dir = Path(args.output_dir)
        checkpoint = output_dir / f"checkpoint-{state.global_step}"
        if args.save_strategy != "no" and (checkpoint / "trainer_state.json").is_file():
            how = (
                f"Saved {checkpoint}. To resume, run the same command with --resume_from_checkpoint auto "
                f"(same output_dir {output_dir})."
            )
        else:
            how = (
                "No checkpoint was saved (save_strategy is no), so the run cannot resume: set save_strategy: steps "
                "and save_steps in the recipe to make runs resumable."
            )
        raise RunInterrupted(
            f"Interrupted by {name} at step {state.global_step} of {state.max_steps}. {how}", self.signal_number
        )


def save_failed(error: Exception, path: str | Path, last_complete: str | None) -> SaveFailedError:
    """The error for a failed save into `path`; a half-written checkpoint folder is removed to free the space."""
    path = Path(path)
    if path.name.startswith("checkpoint-") and path.is_dir() and str(path) != str(last_complete):
        shutil.rmtree(path, ignore_errors=True)  # incomplete: never picked for resuming, and it holds the space
    kept = (
        (
            f"The last complete checkpoint, {last_complete}, is intact: free space or fix the folder, "
            "then run the same "
            "command with --resume_from_checkpoint auto."
        )
        if last_complete
        else "No complete checkpoint was saved before it."
    )
    return SaveFailedError(f"Could not write {path}: {type(error).__name__}: {error}{_free_space(path)}. {kept}")


def write_failed(
    error: Exception, path: str | Path, output_dir: str | Path, last_complete: str | None, atomic: bool = False
) -> SaveFailedError:
    """The error for a failed write of one file of a run (results, predictions, records): names the file and what
    is still intact. `atomic`: the file is written through a temporary file, so its earlier version is unchanged."""
    path, output_dir = Path(path), Path(output_dir)
    intact = [f"{path.name} is unchanged (written whole or not at all)"] if atomic else []
    model = next((output_dir / name for name in MODEL_FILES if (output_dir / name).is_file()), None)
    if model is not None:
        intact.append(f"the trained model {model}")
    if last_complete:
        intact.append(f"the last complete checkpoint {last_complete}")
    kept = "Intact: " + ", ".join(intact) + "." if intact else "No model or complete checkpoint was saved before it."
    retry = " Free space or fix the folder, then run the same command" + (
        " with --resume_from_checkpoint auto." if last_complete else "."
    )
    return SaveFailedError(f"Could not write {path}: {type(error).__name__}: {error}{_free_space(path)}. {kept}{retry}")


def wrote_into(error: OSError, output_dir: str | Path) -> bool:
    """The OSError is about a file in the output folder (not, say, a data file that could not be read)."""
    filename = getattr(error, "filename", None)
    if not filename:
        return False
    return Path(os.path.abspath(filename)).is_relative_to(os.path.abspath(output_dir))


def _free_space(path: Path) -> str:
    """'; 7.9 MB free on its filesystem' (torch.save's error does not say that the disk is full)."""
    for folder in (path, *path.parents):
        if folder.exists():
            return f" ({shutil.disk_usage(folder).free / 2**20:.1f} MB free on its filesystem)"
    return ""
