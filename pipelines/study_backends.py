"""Where a study's jobs run: one job per GPU on this machine, or a Slurm job array, both through `submitit`.

We write no scheduler: submitit starts, watches, times out and requeues the jobs; a job is still our ordinary
`accelerate launch scripts/run_<task>.py job_recipe.yaml --resume_from_checkpoint auto ...` command (study.py).

- This machine with GPUs (`--backend local`, the default): the GPUs are cut into slots of `resources.gpus` GPUs
  (default 1). Each slot is one submitit local job that sees only its GPUs (CUDA_VISIBLE_DEVICES) and runs its
  share of the study's jobs one after another (jobs 0, S, 2S, ... on slot 0 of S slots). Without a GPU, study.py
  runs the jobs one at a time in its own process instead.
- Slurm (`--backend slurm`): one array task per unfinished job, with the recipe's `resources`. When Slurm is
  about to stop a task (time limit, preemption), submitit calls StudyTask.checkpoint: the job gets SIGTERM (the
  pipeline saves a checkpoint and exits), and the task is requeued with the same command, which resumes from
  that checkpoint. `--backend submitit-local` runs the same code path on this machine, with no cluster.

The study file's resources section (all optional):

    resources:
      gpus: 1               # GPUs per job; more than 1 adds `--num_processes N` to `accelerate launch`
      cpus: 8               # CPUs per job (Slurm cpus_per_task)
      mem_gb: 32
      time_min: 240         # the Slurm time limit of one attempt; a requeued job continues from its checkpoint
      partition: gpu
      array_parallelism: 8  # at most this many array tasks at once
      max_requeues: 3       # requeues after a time limit (submitit's max_num_timeout); preemptions always requeue
      slurm: {account: my-lab, qos: normal}   # any other sbatch option (submitit's slurm_additional_parameters)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pipelines import run_guard, run_lock
from pipelines.search import run_search_worker
from pipelines.study_jobs import job_command, log_header, prepare_job
from pipelines.study_spec import StudyError, load_study

LOCAL_TIME_MIN = 7 * 24 * 60  # submitit's local executor kills jobs after timeout_min (default 2): no limit here
JOB_HELD = 75  # the status recorded for a job skipped because another run holds its folder (EX_TEMPFAIL)
STOP_WAIT_S = 80  # how long a stopped job may take to save its checkpoint (submitit signals 90 s before the limit)


def import_submitit():
    try:
        import submitit
    except ImportError as error:
        raise StudyError(
            "This backend needs submitit: pip install 'pipelines[cluster]' (or pip install submitit)"
        ) from error
    return submitit


# --------------------------------------------------------------------------------------------------------------
# The task that submitit runs: study jobs, one after another, in a submitit job (a GPU slot or a Slurm array task)
# --------------------------------------------------------------------------------------------------------------


class StudyTask:
    """Runs jobs given as (command, job_env, output_dir) in the folder `cwd`; a finished job (all_results.json) is
    skipped, so a requeued task goes on where it stopped, and so is a job whose folder another run holds
    (run_lock.py). Returns each job's exit status."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None

    def __call__(
        self, cwd: str, jobs: list[tuple[list[str], dict[str, str], str]], keep_going: bool = True
    ) -> list[int]:
        # Back to the caller's folder afterwards: submitit's local and debug executors run this in the calling process.
        with working_folder(cwd):
            return self.run_jobs(jobs, keep_going)

    def run_jobs(self, jobs: list[tuple[list[str], dict[str, str], str]], keep_going: bool) -> list[int]:
        statuses = []
        for command, job_env, output_dir in jobs:
            if run_guard.holds_finished_run(output_dir):
                statuses.append(0)
                continue
            holder = run_lock.holder(output_dir)
            if holder is not None:  # e.g. the attempt before a requeue, still saving: never two writers
                print(f"{output_dir}: skipped, another run holds it: {run_lock.describe(holder)}", flush=True)
                statuses.append(JOB_HELD)
                continue
            with (Path(output_dir) / "study_job.log").open("a", encoding="utf-8") as log:
                log.write(log_header(command))
                log.flush()
                # Its own session, so that checkpoint() reaches accelerate and its workers with one signal; SIGUSR2
                # (submitit's "about to be stopped", which Slurm sends to every process of the task) is ignored by
                # the job, which stops on the SIGTERM that checkpoint() sends.
                self.process = subprocess.Popen(
                    command,
                    env={**os.environ, **job_env},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=ignore_sigusr2,
                )
                status = self.process.wait()
            print(f"{output_dir}: exit status {status}", flush=True)
            statuses.append(status)
            if status != 0 and not keep_going:
                break
        return statuses

    def checkpoint(self, *args: Any, **kwargs: Any):
        """Called by submitit before Slurm stops the task: stop the running job so that it saves a checkpoint, then
        requeue the same jobs (the requeued job resumes with --resume_from_checkpoint auto)."""
        import submitit

        if self.process is not None and self.process.poll() is None:
            print(
                f"Stopping job (pid {self.process.pid}) with SIGTERM; it resumes from its checkpoint when requeued",
                flush=True,
            )
            os.killpg(self.process.pid, signal.SIGTERM)
            if not wait_for_group(self.process.pid, STOP_WAIT_S):
                os.killpg(self.process.pid, signal.SIGKILL)
        return submitit.helpers.DelayedSubmission(StudyTask(), *args, **kwargs)

    def __getstate__(self) -> dict:
        return {"process": None}  # a process handle does not travel to the requeued task


@contextlib.contextmanager
def working_folder(path: str):
    """os.chdir for the block, then back (contextlib.chdir from Python 3.11)."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def wait_for_group(pgid: int, timeout: float) -> bool:
    """Wait until every process of the job's group has exited (the trainer may outlive `accelerate launch` while
    it saves). Not Popen.wait: this runs in a signal handler that interrupted __call__'s Popen.wait, which holds
    the Popen's lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.waitpid(pgid, os.WNOHANG)  # reap the group's leader, our child, once it has exited
        except ChildProcessError:
            pass
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def ignore_sigusr2() -> None:
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def task_jobs(study, jobs) -> list[tuple[list[str], dict[str, str], str]]:
    """Prepare each job (recipe file, W&B run id) and describe it for a StudyTask."""
    return [(job_command(study, job), prepare_job(study, job), str(job.output_dir)) for job in jobs]


def collect(study, submitted: list[tuple[Any, list]]) -> list:
    """Wait for the submitit jobs; returns the study jobs that did not finish."""
    failed = []
    for submitit_job, jobs in submitted:
        try:
            submitit_job.result()
        except Exception as error:  # noqa: BLE001 - submitit raises whatever the task raised; report and go on
            print(
                f"submitit job {submitit_job.job_id} failed: {str(error).strip().splitlines()[-1:]}; "
                f"its logs: {submitit_job.paths.stdout}",
                file=sys.stderr,
                flush=True,
            )
        for job in jobs:
            if not job.finished:
                failed.append(job)
                print(f"{job.run_name}: FAILED; log: {job.output_dir / 'study_job.log'}", file=sys.stderr, flush=True)
    return failed


# --------------------------------------------------------------------------------------------------------------
# One machine with GPUs
# --------------------------------------------------------------------------------------------------------------


def visible_gpus() -> list[int]:
    """The GPUs this process may use: CUDA_VISIBLE_DEVICES if set, else every GPU torch sees."""
    devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    if devices is not None:
        return [int(d) for d in devices.split(",") if d.strip() and d.strip().lstrip("-").isdigit() and int(d) >= 0]
    import torch

    return list(range(torch.cuda.device_count()))


def gpu_slots(gpus: list[int] | None, gpus_per_job: int) -> list[list[int]]:
    """The GPUs cut into groups of gpus_per_job (leftover GPUs stay idle); [] without GPUs."""
    gpus = visible_gpus() if gpus is None else gpus
    if gpus and len(gpus) < gpus_per_job:
        raise StudyError(f"resources.gpus is {gpus_per_job} per job, but only {len(gpus)} GPU(s) are available: {gpus}")
    return [gpus[i : i + gpus_per_job] for i in range(0, len(gpus) - gpus_per_job + 1, gpus_per_job)]


def run_jobs_on_gpus(study, jobs, slots: list[list[int]], keep_going: bool) -> list:
    """One submitit local job per GPU slot, each running its share of the unfinished jobs in turn (a slot stops at
    a failed job unless keep_going)."""
    submitit = import_submitit()
    unfinished = [j for j in jobs if not j.finished]
    shares = [unfinished[k :: len(slots)] for k in range(len(slots))]
    submitted = []
    for slot, share in zip(slots, shares):
        if not share:
            continue
        executor = submitit.LocalExecutor(folder=study.output_root / "submitit")
        executor.update_parameters(visible_gpus=slot, gpus_per_node=len(slot), timeout_min=LOCAL_TIME_MIN)
        submitit_job = executor.submit(StudyTask(), str(Path.cwd()), task_jobs(study, share), keep_going)
        print(
            f"GPU {','.join(map(str, slot))}: {', '.join(j.run_name for j in share)} (logs: <job>/study_job.log)",
            flush=True,
        )
        submitted.append((submitit_job, share))
    return collect(study, submitted)


# --------------------------------------------------------------------------------------------------------------
# Slurm (and submitit's local executor standing in for it)
# --------------------------------------------------------------------------------------------------------------


def executor_for(study, cluster: str, folder: Path):
    """A submitit executor with the study's resources: Slurm options, or the same jobs on this machine."""
    submitit = import_submitit()
    resources = study.resources
    executor = submitit.AutoExecutor(
        folder=folder,
        cluster="local" if cluster == "submitit-local" else cluster,
        slurm_max_num_timeout=int(resources.get("max_requeues", 3)),
    )
    parameters: dict[str, Any] = {
        "name": study.name,
        "timeout_min": int(resources.get("time_min") or 0) or None,
        "gpus_per_node": int(resources.get("gpus") or 0),
        "tasks_per_node": 1,
        "nodes": 1,
        "cpus_per_task": resources.get("cpus"),
        "mem_gb": resources.get("mem_gb"),
        "slurm_partition": resources.get("partition"),
        "slurm_array_parallelism": resources.get("array_parallelism"),
        "slurm_additional_parameters": resources.get("slurm"),
    }
    if cluster == "submitit-local":
        parameters["timeout_min"] = parameters["timeout_min"] or LOCAL_TIME_MIN
    executor.update_parameters(**{k: v for k, v in parameters.items() if v is not None})
    return executor


def run_jobs_with_submitit(study, jobs, cluster: str) -> list:
    """Submit every unfinished job as one task of a job array and wait for the array; the report follows."""
    unfinished = [j for j in jobs if not j.finished]
    executor = executor_for(study, cluster, study.output_root / "submitit")
    described = task_jobs(study, unfinished)
    with executor.batch():
        submitit_jobs = [executor.submit(StudyTask(), str(Path.cwd()), [job]) for job in described]
    print(
        f"Submitted {len(submitit_jobs)} job(s) ({cluster}): {', '.join(j.job_id for j in submitit_jobs)}. "
        "Waiting for them; if you stop waiting, they go on, and `run_study.py <study> --report-only` writes the "
        "report once they are done.",
        flush=True,
    )
    return collect(study, [(sj, [job]) for sj, job in zip(submitit_jobs, unfinished)])


# --------------------------------------------------------------------------------------------------------------
# Search workers as submitit jobs
# --------------------------------------------------------------------------------------------------------------


def search_worker(cwd: str, study_path: str, keep_going: bool) -> int:
    """One search worker in a submitit job: trials until the search has its budget (see search.py)."""
    with working_folder(cwd):
        return run_search_worker(load_study(study_path), keep_going)


def run_search_workers(study, cluster: str, slots: list[list[int]], n_workers: int, keep_going: bool) -> int:
    """Workers sharing the study's search: one per GPU slot on this machine, or n_workers Slurm jobs. A worker
    that is stopped leaves its trial to the others (retried from its checkpoint once its heartbeat is stale)."""
    submitit = import_submitit()
    folder = study.output_root / "submitit"
    arguments = (str(Path.cwd()), str(study.path), keep_going)
    if cluster == "local":
        submitted = []
        for slot in slots:
            executor = submitit.LocalExecutor(folder=folder)
            executor.update_parameters(visible_gpus=slot, gpus_per_node=len(slot), timeout_min=LOCAL_TIME_MIN)
            submitted.append(executor.submit(search_worker, *arguments))
        where = f"one per GPU slot ({' '.join(','.join(map(str, s)) for s in slots)})"
    else:
        executor = executor_for(study, cluster, folder)
        with executor.batch():
            submitted = [executor.submit(search_worker, *arguments) for _ in range(n_workers)]
        where = f"{cluster} jobs {', '.join(j.job_id for j in submitted)}"
    print(f"Search workers: {len(submitted)}, {where}; logs in {folder}", flush=True)
    statuses = []
    for job in submitted:
        try:
            statuses.append(job.result())
        except Exception as error:  # noqa: BLE001 - report and let the others finish the search
            print(
                f"search worker {job.job_id} failed: {str(error).strip().splitlines()[-1:]}; log: {job.paths.stdout}",
                file=sys.stderr,
                flush=True,
            )
            statuses.append(1)
    return max(statuses, default=0)
