"""scripts/gpu_check.py on CPU: its tiny profile runs every check for real (precision, MNLI, QA, SIGTERM + resume,
2-process DDP, the benchmark's rows) and writes one markdown summary with a row per check."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO, subprocess_env


@pytest.mark.slow  # about 9 Python processes start one after another: 1.5 min quiet, 6 min on loaded cores
def test_gpu_check_tiny_profile_passes_every_check_and_writes_the_summary(tmp_path, data_dir):
    output = tmp_path / "summary.md"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "gpu_check.py"),
            "--profile",
            "tiny",
            "--output",
            str(output),
            "--work-dir",
            str(tmp_path / "work"),
            "--data-dir",
            str(data_dir),
        ],
        cwd=tmp_path,
        env=subprocess_env(OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=900,
    )
    summary = output.read_text()
    assert result.returncode == 0, summary + result.stdout[-3000:] + result.stderr[-3000:]
    checks = summary.split("| check | result |")[1].split("\n\n")[0]  # the first table: one row per check
    rows = [line.split("|")[1:3] for line in checks.splitlines()[2:]]
    statuses = {name.strip(): status.strip() for name, status in rows}
    assert statuses == {
        "precision": "passed",
        "mnli": "passed",
        "qa": "passed",
        "resume": "passed",
        "ddp": "passed",
        "benchmark b8": "passed",
    }, summary
    assert "6 passed, 0 failed, 0 skipped" in summary
    assert "SIGTERM at step" in summary and "world size 2" in summary
    assert "| reference | fp32 |" in summary and "| project |" in summary  # the benchmark's rows, with MFU


def test_a_check_that_fails_is_reported_and_the_others_still_run(tmp_path, data_dir):
    """A model folder that does not exist: every run fails, each with its own row and output, and the exit status
    says so; the precision check, which needs no model, still passes."""
    output = tmp_path / "summary.md"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "gpu_check.py"),
            "--profile",
            "tiny",
            "--output",
            str(output),
            "--work-dir",
            str(tmp_path / "work"),
            "--data-dir",
            str(data_dir),
            "--model",
            str(tmp_path / "missing"),
            "--checks",
            "precision",
            "mnli",
            "benchmark",
        ],
        cwd=tmp_path,
        env=subprocess_env(OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = output.read_text()
    assert result.returncode == 1, summary
    assert "| precision | passed |" in summary and "| mnli | failed |" in summary
    assert "| benchmark b8 | failed |" in summary
    assert "### mnli: last lines of its output" in summary
