"""One job of a study (pipelines/study.py): its command line, its recipe file and record, and running it with its log.

Every backend (study_backends.py, search.py) starts a job the same way: `prepare_job` writes
`<job>/job_recipe.yaml` (the arm's merged recipe) and `<job>/study_job.json` (the record that keeps the job's W&B
run id across restarts), and `job_command` is `accelerate launch ... <script> job_recipe.yaml --output_dir ...
--seed ... --resume_from_checkpoint auto`. Without GPUs the jobs run here one at a time (`run_jobs_one_at_a_time`),
their output on the console and in `<job>/study_job.log`.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import secrets
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from pipelines import run_lock
from pipelines.study_spec import Job, Study, StudyError

logger = logging.getLogger("pipelines")


def accelerate_executable() -> str:
    beside_python = Path(sys.executable).parent / "accelerate"
    found = str(beside_python) if beside_python.is_file() else shutil.which("accelerate")
    if found is None:
        raise StudyError("The `accelerate` command was not found (pip install accelerate), or set launch_config: null")
    return found


def job_command(study: Study, job: Job) -> list[str]:
    """`accelerate launch --config_file C script job_recipe.yaml --output_dir ... --seed ...` for one job."""
    arguments = [
        str(study.script),
        str(job.output_dir / "job_recipe.yaml"),
        "--output_dir",
        str(job.output_dir),
        "--seed",
        str(job.seed),
        "--run_name",
        job.run_name,
        "--wandb_group",
        study.name,
        "--wandb_job_type",
        job.arm.job_type,
        "--resume_from_checkpoint",
        "auto",
    ]
    if study.launch_config is None:
        return [sys.executable, *arguments]
    gpus = int(study.resources.get("gpus") or 0)
    processes = ["--num_processes", str(gpus)] if gpus > 1 else []  # one process per GPU of the job
    return [accelerate_executable(), "launch", "--config_file", str(study.launch_config), *processes, *arguments]


def prepare_job(study: Study, job: Job) -> dict[str, str]:
    """Write the job's recipe and record (keeping the W&B run id of an earlier attempt).

    Returns the environment variables the job adds to its machine's environment (its W&B run id).
    """
    job.output_dir.mkdir(parents=True, exist_ok=True)
    recipe = dict(job.arm.recipe)
    recipe["wandb_tags"] = list(dict.fromkeys([*recipe.get("wandb_tags", []), study.name, job.arm.name]))
    header = (
        f"# Written by scripts/run_study.py for study '{study.name}' ({study.path}), arm '{job.arm.name}':\n"
        f"# {job.arm.recipe_source} + the study's overrides + the arm's overrides. Seed and output folder are "
        "on the command line.\n"
    )
    (job.output_dir / "job_recipe.yaml").write_text(
        header + yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    record_path = job.output_dir / "study_job.json"
    record = json.loads(record_path.read_text(encoding="utf-8")) if record_path.is_file() else {}
    record.setdefault("wandb_run_id", secrets.token_hex(4))
    record.update(study=study.name, arm=job.arm.name, seed=job.seed, recipe=recipe, command=job_command(study, job))
    record["attempts"] = record.get("attempts", 0) + 1
    record_path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return {"WANDB_RUN_ID": record["wandb_run_id"], "WANDB_RESUME": "allow"}


def log_header(command: list[str]) -> str:
    devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    where = f" [CUDA_VISIBLE_DEVICES={devices}]" if devices is not None else ""
    return f"\n=== {datetime.datetime.now().isoformat(timespec='seconds')}{where} {shlex.join(command)}\n"


def run_job(command: list[str], job_env: dict[str, str], log_path: Path) -> int:
    """Run one job, its output both on the console and appended to the job's study_job.log."""
    with log_path.open("a", encoding="utf-8") as log:
        log.write(log_header(command))
        log.flush()
        process = subprocess.Popen(
            command,
            env={**os.environ, **job_env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
        )
        try:
            for line in process.stdout:
                sys.stdout.write(line)
                log.write(line)
            return process.wait()
        except KeyboardInterrupt:
            # Ctrl-C reached the job too (same process group); give it a moment to stop, then make sure.
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            raise


def check_finished_recipe(study: Study, job: Job) -> None:
    """A finished job whose recipe was since changed in the study file is still skipped: say so."""
    record_path = job.output_dir / "study_job.json"
    if not record_path.is_file():
        return
    recorded = json.loads(record_path.read_text(encoding="utf-8")).get("recipe", {})
    current = {**job.arm.recipe, "wandb_tags": recorded.get("wandb_tags")}
    if recorded and recorded != current:
        changed = sorted(k for k in set(recorded) | set(current) if recorded.get(k) != current.get(k))
        logger.warning(
            "%s finished with another recipe (changed: %s); delete %s to run it again",
            job.run_name,
            ", ".join(changed),
            job.output_dir,
        )


def run_jobs_one_at_a_time(study: Study, jobs: list[Job], keep_going: bool) -> list[Job] | None:
    """Without GPUs (or with GPUs for one job at a time): each job in turn, its output on the console. Returns the
    failed jobs, or None when interrupted."""
    failed = []
    for number, job in enumerate(jobs, 1):
        label = f"[{number}/{len(jobs)}] {job.run_name}"
        if job.finished:
            continue
        holder = run_lock.holder(job.output_dir)
        if holder is not None:  # another worker (or an earlier attempt still running) has it
            print(f"{label}: skipped, another run holds it: {run_lock.describe(holder)}", flush=True)
            continue
        resuming = f", resuming from {job.checkpoints[-1].parent.name}" if job.checkpoints else ""
        print(f"{label}: running{resuming} (log: {job.output_dir / 'study_job.log'})", flush=True)
        job_env = prepare_job(study, job)
        try:
            status = run_job(job_command(study, job), job_env, job.output_dir / "study_job.log")
        except KeyboardInterrupt:
            print(f"\nInterrupted during {job.run_name}. Run the same command again to resume.", file=sys.stderr)
            return None
        if status != 0 or not job.finished:
            failed.append(job)
            print(
                f"{label}: FAILED (exit status {status}); log: {job.output_dir / 'study_job.log'}",
                file=sys.stderr,
                flush=True,
            )
            if not keep_going:
                break
    return failed
