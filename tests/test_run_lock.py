"""One writer per run folder, with real processes: a second run into a folder that a live run holds is refused
with one line naming the holder; a run killed with SIGKILL leaves a stale lock that the next run takes over; a
study job whose earlier attempt still runs is skipped (a Slurm requeue, two workers on one job); a folder that is
not a run is refused unless overwrite_output_dir; a write that fails names the file and what is intact."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, subprocess_env

from pipelines import run_lock, run_outputs, study_backends
from pipelines.interruptions import SaveFailedError
from pipelines.run_guard import OutputDirError, RunArguments, check_output_dir
from pipelines.tasks import mnli

# Made-up pairs: never dev data in training.
ROWS = [
    {
        "premise": f"A man plays song number {i} on a guitar.",
        "hypothesis": "A man makes music." if i % 2 else "Nobody plays.",
        "label": i % 3,
    }
    for i in range(24)
]


@pytest.fixture
def recipe(tmp_path, tiny_bert_dir) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    for split, rows in (("train", ROWS), ("validation_matched", ROWS[:4]), ("validation_mismatched", ROWS[4:8])):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "recipe.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "model_name_or_path": str(tiny_bert_dir),
                "data_dir": str(data),
                "max_seq_length": 32,
                "max_steps": 2,
                "per_device_train_batch_size": 8,
                "learning_rate": 1e-3,
                "logging_steps": 1,
                "report_to": "none",
                "disable_tqdm": True,
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


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def start_training(cmd, cwd) -> subprocess.Popen:
    """Start a long run and return once it trains (it holds its folder's lock from before that), paused with
    SIGSTOP: alive and holding the lock, but leaving the CPU to the processes under test."""
    process = subprocess.Popen(
        cmd, cwd=cwd, env=subprocess_env(TQDM_DISABLE="1"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    for line in process.stdout:
        if "'loss'" in line:
            process.send_signal(signal.SIGSTOP)
            return process
    raise AssertionError(f"the run ended before training (status {process.wait()})")


def test_two_runs_into_one_folder_and_a_stale_lock(tmp_path, recipe, caplog):
    output_dir = tmp_path / "out"
    first = start_training(command(recipe, output_dir, "--max_steps", "100000"), tmp_path)
    try:
        record = json.loads((output_dir / run_lock.LOCK_NAME).read_text())
        assert record["pid"] == first.pid and record["host"] == socket.gethostname()

        second = run(command(recipe, output_dir), tmp_path)
        assert second.returncode == 2, second.stderr[-3000:]
        assert error_lines(second.stderr) == [
            f"error: {output_dir} is in use by another run: pid {first.pid} on host {socket.gethostname()}, started "
            f"{record['started']} ({record['command']}). Wait for it to end or stop it, or choose another output_dir."
        ]
        assert "Traceback" not in second.stderr
        assert json.loads((output_dir / run_lock.LOCK_NAME).read_text()) == record  # the holder's lock is untouched
        assert run_lock.holder(output_dir) == record
    finally:
        first.send_signal(signal.SIGKILL)  # as the OOM killer or a lost node would
        first.wait(timeout=60)

    # SIGKILL left the lock file behind; its process is gone, so the next run takes it over and says so.
    assert (output_dir / run_lock.LOCK_NAME).is_file() and run_lock.holder(output_dir) is None
    with caplog.at_level(logging.WARNING, logger="pipelines"):
        mnli.main([str(recipe), "--output_dir", str(output_dir)])  # in-process: one interpreter start less
    assert f"Taking over the lock of {output_dir}: the run that held it is gone (pid {first.pid} on host" in caplog.text
    assert (output_dir / "all_results.json").is_file()
    assert not (output_dir / run_lock.LOCK_NAME).exists()  # released at the end


def write_study(tmp_path: Path, recipe: Path) -> Path:
    study = {
        "name": "held",
        "script": str(REPO / "scripts" / "run_mnli.py"),
        "launch_config": None,
        "recipe": str(recipe),
        "seeds": [1],
        "output_root": str(tmp_path / "study"),
        "arms": [{"name": "a", "job_type": "a"}],
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def test_a_study_job_whose_earlier_attempt_still_runs_is_skipped(tmp_path, recipe):
    from pipelines.study import load_study
    from pipelines.study_jobs import job_command, prepare_job

    study = load_study(write_study(tmp_path, recipe))
    job = study.jobs()[0]
    prepare_job(study, job)
    # The earlier attempt: the job's own command, still training.
    old = start_training(job_command(study, job) + ["--max_steps", "100000"], tmp_path)
    try:
        # A requeued submitit task runs the same job while the old attempt still writes: it is skipped.
        caller_folder = os.getcwd()
        statuses = study_backends.StudyTask()(str(tmp_path), [(job_command(study, job), {}, str(job.output_dir))])
        assert statuses == [study_backends.JOB_HELD]
        assert os.getcwd() == caller_folder  # the task ran in tmp_path and came back (it once leaked to later tests)
        assert not (job.output_dir / "study_job.log").exists()  # no second attempt was started

        # A second study worker on the same job: skipped with the holder named, and no report.
        other = run([sys.executable, str(REPO / "scripts" / "run_study.py"), str(study.path)], tmp_path)
        assert other.returncode == 1, other.stderr[-3000:]
        assert f"[1/1] a-seed1: skipped, another run holds it: pid {old.pid} on host" in other.stdout
        assert json.loads((job.output_dir / "study_job.json").read_text())["attempts"] == 1  # not touched
        assert old.poll() is None and not (job.output_dir / "all_results.json").exists()
    finally:
        old.kill()
        old.wait(timeout=60)


def test_a_folder_that_is_not_a_run_is_refused(tmp_path, recipe):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes\n")
    refused = run(command(recipe, folder), tmp_path)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert error_lines(refused.stderr) == [
        f"error: {folder} is not empty and is not a run of this pipeline (it holds notes.txt). Choose a new or empty "
        "output_dir, or set overwrite_output_dir: true (--overwrite_output_dir) to write into it anyway."
    ]
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]  # nothing written, not even the lock

    mnli.main([str(recipe), "--output_dir", str(folder), "--overwrite_output_dir"])  # in-process
    assert (folder / "notes.txt").read_text() == "my notes\n" and (folder / "all_results.json").is_file()


def test_which_folders_count_as_runs(tmp_path):
    class Args:
        output_dir = str(tmp_path / "out")
        process_index = 0

    out = Path(Args.output_dir)
    check_output_dir(Args, RunArguments(), None)  # missing
    out.mkdir()
    (out / ".hidden").write_text("")
    check_output_dir(Args, RunArguments(), None)  # hidden files only
    (out / "README.md").write_text("")
    with pytest.raises(OutputDirError, match="is not a run of this pipeline"):
        check_output_dir(Args, RunArguments(), None)
    (out / "checkpoint-4").mkdir()  # a run of ours that was interrupted (and a user's file beside it)
    check_output_dir(Args, RunArguments(), None)


@pytest.fixture
def full_filesystem(tmp_path):
    """A 1 MB tmpfs, full."""
    folder = tmp_path / "full"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    (folder / "run").mkdir()
    (folder / "run" / "all_results.json").write_text('{"old": 1}\n')
    subprocess.run(["dd", "if=/dev/zero", f"of={folder / 'filler'}", "bs=64k", "count=100"], capture_output=True)
    yield folder / "run"
    subprocess.run(["umount", str(folder)], check=True)


def test_a_failed_write_names_the_file_and_what_is_intact(full_filesystem):
    path = full_filesystem / "all_results.json"
    with pytest.raises(SaveFailedError) as error:
        run_outputs.write_json(path, {"accuracy": 0.5, "text": "x" * 100000})
    assert str(error.value).startswith(f"Could not write {path}: OSError: [Errno 28] No space left on device")
    assert (
        "Intact: all_results.json is unchanged (written whole or not at all). Free space or fix the folder, then "
        "run the same command."
    ) in str(error.value)
    assert path.read_text() == '{"old": 1}\n' and sorted(p.name for p in full_filesystem.iterdir()) == [
        "all_results.json"
    ]


def process_state(pid: int) -> str:
    """R, S, Z (zombie), ...: field 3 of /proc/<pid>/stat, the first after "(command)"."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux) to see process states")
def test_a_killed_run_not_yet_reaped_holds_nothing(tmp_path):
    # A study that is killed with its job and run again at once can find the job still a zombie: dead, its files
    # (and flock) closed, but its pid and start time still in /proc until its parent reaps it. It once made the
    # study skip the job as "held" (tests/test_study.py::test_study_end_to_end_with_resume, under load).
    folder = tmp_path / "run"
    code = (
        "import time; from pipelines import run_lock\n"
        f"run_lock.acquire({str(folder)!r}); print('held', flush=True); time.sleep(600)"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "held"
        assert run_lock.holder(folder)["pid"] == child.pid  # alive: it holds the folder
        os.kill(child.pid, signal.SIGKILL)  # and no wait(): the child stays a zombie until reaped below
        for _ in range(3000):
            if process_state(child.pid) == "Z":
                break
            time.sleep(0.01)
        assert process_state(child.pid) == "Z"
        # The kernel may drop the zombie's flock a moment after the state turns Z (deferred close): wait for that,
        # but not for the reaping, which never comes here. Before the fix the zombie's record held the folder.
        for _ in range(1000):
            if run_lock.holder(folder) is None:
                break
            time.sleep(0.01)
        assert run_lock.holder(folder) is None
        assert process_state(child.pid) == "Z"  # still not reaped
        run_lock.release(folder, run_lock.acquire(folder))  # a new run takes the folder over
    finally:
        child.kill()
        child.wait(timeout=60)
