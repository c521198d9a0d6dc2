"""Child processes for the GPU check (pipelines/gpu_check.py): each in its own process group with its own timeout,
its output copied to a log, inside one time budget shared by all checks. The paths are this checkout's: the checks
launch its scripts with its configs, so they run from a clone (`pip install -e .`), not from an installed wheel."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent  # the checkout: scripts/, configs/, tests/fixtures/


class Budget:
    """The time left for all checks together; each check gets min(its own timeout, what is left)."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def timeout(self, own: float) -> float:
        return min(own, self.deadline - time.monotonic())


def child_env() -> dict:
    """No Hub (everything is local), no W&B, this checkout importable (also in accelerate's child processes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "WANDB_MODE": "disabled",
            "PYTHONUNBUFFERED": "1",
            "TQDM_DISABLE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    return env


def run_process(cmd: list[str], timeout: float, log: Path, on_line=None) -> tuple[int | None, list[str]]:
    """Run cmd in its own process group, its output copied to `log`; kill the whole group at the timeout.
    Returns (exit status or None when it timed out, output lines). on_line(process, line) sees each line."""
    log.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    timed_out = threading.Event()
    with log.open("a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        process = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )

        def kill():
            timed_out.set()
            try:
                os.killpg(process.pid, signal.SIGKILL)  # torchrun's workers too
            except ProcessLookupError:
                pass

        timer = threading.Timer(max(timeout, 1), kill)
        timer.start()
        try:
            for line in process.stdout:
                out.write(line)
                lines.append(line)
                if on_line is not None:
                    on_line(process, line)
            process.wait()
        finally:
            timer.cancel()
    return (None if timed_out.is_set() else process.returncode), lines


def tail(lines: list[str], n: int = 15) -> str:
    return "".join(lines[-n:])


def launch(config: str, script: str, recipe: Path, *overrides: str, processes: int | None = None) -> list[str]:
    """`accelerate launch` of a task script, as a user runs it."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / config)]
    if processes is not None:
        command += ["--num_processes", str(processes)]
    return [*command, str(REPO / "scripts" / script), str(recipe), *overrides]


def exit_text(status: int | None) -> str:
    return "timed out (killed)" if status is None else f"exit status {status}"
