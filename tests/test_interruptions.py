"""A run stopped by Ctrl-C or SIGTERM saves a checkpoint and says how to resume; a save that fails on a full disk
keeps the last complete checkpoint usable and names the path. Each case runs scripts/run_mnli.py as a user does."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, launch_command, subprocess_env

from pipelines.checkpoints import resolve_resume_checkpoint

# Made-up pairs: never dev data in training.
ROWS = [
    {
        "premise": f"A man plays song number {i} on a guitar.",
        "hypothesis": "A man makes music." if i % 2 else "Nobody plays.",
        "label": i % 3,
    }
    for i in range(48)
]


@pytest.fixture
def recipe(tmp_path, tiny_bert_dir) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    for split, rows in (("train", ROWS), ("validation_matched", ROWS[:8]), ("validation_mismatched", ROWS[8:16])):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "recipe.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "model_name_or_path": str(tiny_bert_dir),
                "data_dir": str(data),
                "max_seq_length": 32,
                "per_device_train_batch_size": 8,
                "learning_rate": 1e-3,
                "logging_steps": 1,
                "report_to": "none",
                "disable_tqdm": True,
                "seed": 3,
            }
        )
    )
    return path


def command(recipe: Path, output_dir: Path, *overrides: str) -> list[str]:
    return [
        sys.executable,
        str(REPO / "scripts" / "run_mnli.py"),
        str(recipe),
        "--output_dir",
        str(output_dir),
        *overrides,
    ]


def run(cmd, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, cwd=cwd, env=subprocess_env(TQDM_DISABLE="1"), capture_output=True, text=True, timeout=300
    )


def resume(recipe: Path, output_dir: Path, *overrides: str) -> None:
    """The same command with --resume_from_checkpoint auto, run in-process."""
    from pipelines.tasks import mnli

    mnli.main([str(recipe), "--output_dir", str(output_dir), *overrides, "--resume_from_checkpoint", "auto"])


def error_line(stderr: str) -> str:
    """The one `error:` line (library warnings, such as pyarrow's FutureWarning, may come before it)."""
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def signal_after_first_log(cmd, cwd, signal_number) -> tuple[int, str]:
    """Start the run, send the signal once the first training loss is printed, and wait for it to end."""
    process = subprocess.Popen(
        cmd, cwd=cwd, env=subprocess_env(TQDM_DISABLE="1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    for line in process.stdout:
        if "'loss'" in line:
            process.send_signal(signal_number)
            break
    _, stderr = process.communicate(timeout=300)
    return process.returncode, stderr


def test_sigterm_saves_a_checkpoint_and_the_run_resumes(tmp_path, recipe, caplog):
    output_dir = tmp_path / "out"
    steps = ["--max_steps", "24", "--save_strategy", "steps", "--save_steps", "100"]  # no checkpoint before the signal
    status, stderr = signal_after_first_log(command(recipe, output_dir, *steps), tmp_path, signal.SIGTERM)
    assert status == 128 + signal.SIGTERM, stderr[-3000:]
    checkpoint = resolve_resume_checkpoint(type("Args", (), {"output_dir": str(output_dir)}), value="auto")
    assert checkpoint is not None and not (output_dir / "all_results.json").exists()
    step = int(Path(checkpoint).name.split("-")[1])
    assert 1 <= step < 24
    assert error_line(stderr) == (
        f"error: Interrupted by SIGTERM at step {step} of 24. Saved {checkpoint}. To resume, run the same command with "
        f"--resume_from_checkpoint auto (same output_dir {output_dir})."
    )

    # The resumed run in-process (one interpreter start less): the signal was the part that needed a process.
    with caplog.at_level(logging.INFO, logger="pipelines"):
        resume(recipe, output_dir, *steps)
    assert f"Resuming from {checkpoint}" in caplog.text
    assert json.loads((output_dir / "trainer_state.json").read_text())["global_step"] == 24
    assert (output_dir / "all_results.json").is_file()


def test_ctrl_c_without_checkpoints_says_the_run_cannot_resume(tmp_path, recipe):
    output_dir = tmp_path / "out"
    status, stderr = signal_after_first_log(command(recipe, output_dir, "--max_steps", "40"), tmp_path, signal.SIGINT)
    assert status == 128 + signal.SIGINT, stderr[-3000:]
    first = error_line(stderr)
    assert first.startswith("error: Interrupted by SIGINT at step ") and first.endswith(
        "No checkpoint was saved (save_strategy is no), so the run cannot resume: set save_strategy: steps and "
        "save_steps in the recipe to make runs resumable."
    )
    assert not (output_dir / "all_results.json").exists()  # an interrupted run is never reported as finished


@pytest.fixture
def small_filesystem(tmp_path):
    """A 20 MB tmpfs: one checkpoint of the tiny model (13 MB with its optimizer state) fits, a second does not."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_full_disk_during_a_save_keeps_the_last_checkpoint_and_names_the_path(
    tmp_path, recipe, small_filesystem, caplog
):
    output_dir = small_filesystem / "run"
    failed = run(
        command(recipe, output_dir, "--max_steps", "6", "--save_strategy", "steps", "--save_steps", "2"), tmp_path
    )
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert error_line(failed.stderr).startswith(f"error: Could not write {output_dir}/checkpoint-4: ")
    assert f"The last complete checkpoint, {output_dir}/checkpoint-2, is intact" in failed.stderr
    assert not (output_dir / "checkpoint-4").exists()  # the half-written one is removed, freeing its space

    # The kept checkpoint resumes; without further checkpoints the rest of the run fits on the disk. In-process.
    with caplog.at_level(logging.INFO, logger="pipelines"):
        resume(recipe, output_dir, "--max_steps", "6")
    assert f"Resuming from {output_dir}/checkpoint-2" in caplog.text
    assert json.loads((output_dir / "trainer_state.json").read_text())["global_step"] == 6


def test_ctrl_c_through_accelerate_launch_saves_and_prints_one_line(tmp_path, recipe):
    """A terminal's Ctrl-C reaches accelerate's launcher and the run (one process group). The launcher answers it
    by sending the run SIGTERM at once (SIGKILL 5 s later): the run takes that as the same stop, not a second one."""
    import os

    output_dir = tmp_path / "out"
    cmd = launch_command(
        "scripts/run_mnli.py",
        recipe,
        "--output_dir",
        str(output_dir),
        "--max_steps",
        "400",
        "--save_strategy",
        "steps",
        "--save_steps",
        "1000",
    )
    process = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env=subprocess_env(TQDM_DISABLE="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # As in a terminal, SIGINT has its default action. A test runner started in the background of a
        # non-interactive shell inherits SIGINT ignored, and Python then never turns it into KeyboardInterrupt, so
        # the launcher would not see the Ctrl-C at all.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    for line in process.stdout:
        if "'loss'" in line:
            os.killpg(process.pid, signal.SIGINT)
            break
    stdout, stderr = process.communicate(timeout=300)
    line = error_line(stderr)
    assert line.startswith("error: Interrupted by SIGINT at step ") and "Saved " in line, line
    # The launcher sees the Ctrl-C, passes it on as SIGTERM and exits 130 without a word of its own.
    assert process.returncode == 128 + signal.SIGINT, stderr[-3000:]
    assert "Traceback" not in stderr and "already stopping" in stdout
    assert resolve_resume_checkpoint(type("Args", (), {"output_dir": str(output_dir)}), value="auto") is not None
