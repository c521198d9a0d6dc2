"""Study backends through submitit's local executor, with real subprocesses and no cluster: the Slurm path
(one array task per job, requeued after submitit's "about to stop" signal, resuming from the job's checkpoint)
and one job per GPU slot on one machine."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, complete_checkpoint, subprocess_env, write_tiny_mnli

from pipelines import study_backends
from pipelines.study import StudyError, load_study
from pipelines.study_jobs import job_command

psutil = pytest.importorskip("psutil")
pytest.importorskip("submitit")

SAVE_STEPS = 10
ARM_OVERRIDES = {"short": {"max_steps": 4, "save_strategy": "no"}}


def write_study(
    tmp_path: Path, model_dir: Path, data: Path, arms: list[str], max_steps: int, report_to: str = "wandb", **spec
) -> Path:
    recipe = {
        "model_name_or_path": str(model_dir),
        "data_dir": str(data),
        "max_seq_length": 32,
        "max_steps": max_steps,
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 16,
        "learning_rate": 1e-3,
        "save_strategy": "steps",
        "save_steps": SAVE_STEPS,
        "report_to": report_to,
        "wandb_project": "pipelines-tests",
    }
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(recipe))
    study = {
        "name": "tiny-backends",
        "script": str(REPO / "scripts" / "run_mnli.py"),
        "launch_config": None,
        "recipe": str(tmp_path / "base.yaml"),
        "seeds": [1],
        "output_root": str(tmp_path / "study"),
        "arms": [{"name": arm, "job_type": arm, "overrides": ARM_OVERRIDES.get(arm, {})} for arm in arms],
        **spec,
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def test_resources_and_gpu_slots(tmp_path):
    with pytest.raises(StudyError, match="resources: unknown key 'gpu'. Did you mean 'gpus'"):
        load_study(write_study(tmp_path, tmp_path, tmp_path, ["a"], 2, resources={"gpu": 1}))
    with pytest.raises(StudyError, match="resources.mem_gb must be a non-negative number"):
        load_study(write_study(tmp_path, tmp_path, tmp_path, ["a"], 2, resources={"mem_gb": "lots"}))
    assert study_backends.gpu_slots([0, 1, 2, 3, 4], 2) == [[0, 1], [2, 3]]  # the fifth GPU stays idle
    assert study_backends.gpu_slots([], 1) == []  # no GPU: study.py runs the jobs one at a time
    with pytest.raises(StudyError, match="resources.gpus is 4 per job, but only 2 GPU"):
        study_backends.gpu_slots([0, 1], 4)
    # A multi-GPU job launches one process per GPU.
    study = load_study(
        write_study(
            tmp_path,
            tmp_path,
            tmp_path,
            ["a"],
            2,
            resources={"gpus": 4},
            launch_config=str(REPO / "accelerate_config.yaml"),
        )
    )
    command = job_command(study, study.jobs()[0])
    assert command[1:6] == ["launch", "--config_file", str(REPO / "accelerate_config.yaml"), "--num_processes", "4"]


def test_slurm_parameters_reach_the_sbatch_file(tmp_path, monkeypatch):
    submitit = pytest.importorskip("submitit")
    # submitit builds a Slurm executor only where `srun` exists; nothing is submitted here.
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "bin" / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{__import__('os').environ['PATH']}")
    resources = {
        "gpus": 2,
        "cpus": 16,
        "mem_gb": 64,
        "time_min": 240,
        "partition": "gpu",
        "array_parallelism": 4,
        "slurm": {"account": "my-lab"},
    }
    study = load_study(write_study(tmp_path, tmp_path, tmp_path, ["a"], 2, resources=resources))
    executor = study_backends.executor_for(study, "slurm", tmp_path / "submitit")
    assert isinstance(executor._executor, submitit.SlurmExecutor)
    assert executor._executor.parameters["array_parallelism"] == 4 and executor._executor.max_num_timeout == 3
    sbatch = executor._executor._make_submission_file_text("echo", "uid")
    for line in (
        "--gpus-per-node=2",
        "--cpus-per-task=16",
        "--mem=64GB",
        "--time=240",
        "--partition=gpu",
        "--account=my-lab",
        "--job-name=tiny-backends",
        "--signal=USR2@90",
    ):
        assert f"#SBATCH {line}" in sbatch, (line, sbatch)


def task_running(parent: psutil.Process, output_dir: Path) -> psutil.Process | None:
    """The submitit task process (python -m submitit.core._submit) whose job writes to output_dir."""
    for process in parent.children(recursive=True):
        try:
            if "submitit.core._submit" in " ".join(process.cmdline()) and any(
                str(output_dir) in " ".join(child.cmdline()) for child in process.children(recursive=True)
            ):
                return process
        except psutil.NoSuchProcess:
            continue
    return None


@pytest.mark.slow
def test_submitit_local_jobs_requeue_and_resume(tmp_path, data_dir, tiny_bert_dir):
    data = write_tiny_mnli(tmp_path / "data", data_dir, n_train=64)
    study_file = write_study(tmp_path, tiny_bert_dir, data, ["short", "long"], max_steps=40)
    command = [sys.executable, str(REPO / "scripts" / "run_study.py"), str(study_file), "--backend", "submitit-local"]
    log = (tmp_path / "study.log").open("w")
    process = subprocess.Popen(command, cwd=tmp_path, env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT)
    long_job = tmp_path / "study" / "long" / "seed1"

    # Once the long job has saved a checkpoint, give its array task submitit's "about to be stopped" signal (what
    # Slurm sends before a time limit or preemption): the task stops the job and is requeued.
    deadline = time.time() + 300
    while not complete_checkpoint(long_job, SAVE_STEPS) and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    task = task_running(psutil.Process(process.pid), long_job)
    assert task is not None and not (long_job / "all_results.json").exists(), (tmp_path / "study.log").read_text()[
        -3000:
    ]
    task.send_signal(signal.SIGUSR2)
    assert process.wait(timeout=600) == 0, (tmp_path / "study.log").read_text()[-4000:]
    log.close()

    for arm in ("short", "long"):
        assert (tmp_path / "study" / arm / "seed1" / "all_results.json").is_file()
    job_log = (long_job / "study_job.log").read_text()
    assert job_log.count("=== ") == 2 and "Resuming from" in job_log  # requeued, then resumed from its checkpoint
    assert json.loads((long_job / "trainer_state.json").read_text())["global_step"] == 40
    submitit_logs = "".join(p.read_text() for p in (tmp_path / "study" / "submitit").glob("*_log.*"))
    assert "Requeued job" in submitit_logs
    # Both attempts are one W&B run in the study's group.
    record = json.loads((long_job / "study_job.json").read_text())
    run_info = json.loads((long_job / "run_info.json").read_text())
    assert run_info["group"] == "tiny-backends" and run_info["wandb"]["id"] == record["wandb_run_id"]
    assert (tmp_path / "study" / "report" / "report.md").is_file()


@pytest.mark.slow
def test_one_job_per_gpu_slot(tmp_path, data_dir, tiny_bert_dir):
    data = write_tiny_mnli(tmp_path / "data", data_dir)
    study_file = write_study(
        tmp_path, tiny_bert_dir, data, ["a", "b"], max_steps=2, report_to="none", resources={"gpus": 2}
    )
    # GPU numbers on a CPU-only machine: the jobs still run on the CPU; what is checked is where they were placed.
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "run_study.py"), str(study_file), "--gpus", "0,1,2,3"],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "GPU 0,1: a-seed1" in result.stdout and "GPU 2,3: b-seed1" in result.stdout
    for arm, gpus in (("a", "0,1"), ("b", "2,3")):
        job_log = (tmp_path / "study" / arm / "seed1" / "study_job.log").read_text()
        assert (
            f"[CUDA_VISIBLE_DEVICES={gpus}]" in job_log
            and (tmp_path / "study" / arm / "seed1" / "all_results.json").is_file()
        )
