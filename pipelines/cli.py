"""How every script in scripts/ ends: errors in the user's input as one line, real bugs with their traceback.

    if __name__ == "__main__":
        cli.run(main)

- An error in the user's input (recipe, data, study file, a model or Hub id that cannot be loaded, ...) prints
  `error: <message>` on stderr and exits with status 2.
- A run that stopped for a reason outside the code (a NaN loss, a failed save, a failed Hub push) prints
  `error: <message>` and exits with status 1.
- An interrupted run (Ctrl-C, SIGTERM) prints how to resume and exits with 128 + the signal number (130, 143).
- Anything else is a bug: Python's traceback, exit status 1.
PIPELINES_TRACEBACK=1 prints the full traceback before the one-line message in every case.

Error classes are named rather than imported, so that a script does not import every module to end cleanly; a
class counts when it or one of its base classes is listed.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback

USER_INPUT_ERRORS = {
    "pipelines.arguments.RecipeError",  # also run_guard.OutputDirError and lora's argument errors
    "pipelines.data_files.DataError",
    "pipelines.hub.ModelLoadError",
    "pipelines.study_spec.StudyError",
    "pipelines.report_runs.ReportError",
    "pipelines.tasks.base.UnknownTaskError",
    "pipelines.run_folder.RunFolderError",  # also model_card.ModelCardError
    "pipelines.hub_push.UploadCheckError",
}
RUN_ERRORS = {
    "pipelines.training.NonFiniteLossError",
    "pipelines.interruptions.SaveFailedError",
    "pipelines.hub_push.PushError",
}
TRACEBACK_VARIABLE = "PIPELINES_TRACEBACK"


def _is_one_of(error: BaseException, names: set[str]) -> bool:
    return any(f"{cls.__module__}.{cls.__qualname__}" in names for cls in type(error).__mro__)


def exit_status(error: BaseException) -> int | None:
    """The exit status for an error shown as one line, or None for a bug (shown with its traceback)."""
    if isinstance(error, KeyboardInterrupt):
        return 128 + signal.SIGINT
    if hasattr(error, "signal_number"):  # interruptions.RunInterrupted
        return 128 + error.signal_number
    if _is_one_of(error, USER_INPUT_ERRORS):
        return 2
    if _is_one_of(error, RUN_ERRORS):
        return 1
    return None


def run(main, *args) -> None:
    """Call main(*args) and exit: with its return value when it returns an int, else 0; errors as above."""
    try:
        result = main(*args)
    except (Exception, KeyboardInterrupt) as error:
        status = exit_status(error)
        if status is None:
            raise
        if os.environ.get(TRACEBACK_VARIABLE, "") not in ("", "0"):
            traceback.print_exc()
        message = str(error) or "interrupted"
        print(f"error: {message}", file=sys.stderr)
        if status == 2:
            print(f"(set {TRACEBACK_VARIABLE}=1 for the full traceback)", file=sys.stderr)
        sys.stderr.flush()
        sys.exit(status)
    sys.exit(result if isinstance(result, int) and not isinstance(result, bool) else 0)
