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

Which errors are which: their classes name a base from errors.py (UserInputError, RunStoppedError).
"""

from __future__ import annotations

import os
import signal
import sys
import traceback

from pipelines.errors import RunStoppedError, UserInputError

TRACEBACK_VARIABLE = "PIPELINES_TRACEBACK"


def exit_status(error: BaseException) -> int | None:
    """The exit status for an error shown as one line, or None for a bug (shown with its traceback)."""
    if isinstance(error, KeyboardInterrupt):
        return 128 + signal.SIGINT
    if hasattr(error, "signal_number"):  # interruptions.RunInterrupted
        return 128 + error.signal_number
    if isinstance(error, UserInputError):
        return 2
    if isinstance(error, RunStoppedError):
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
