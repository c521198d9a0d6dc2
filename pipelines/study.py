"""Studies: a grid of jobs (arms × seeds), resumable, ending with the comparison report; optionally a search first.

    python scripts/run_study.py configs/studies/mnli_pretrained_vs_scratch_cpu.yaml
    python scripts/run_study.py configs/studies/mnli_pretrained_vs_scratch_cpu.yaml --dry-run   # the plan only
    python scripts/run_study.py configs/studies/mnli_pretrained_vs_scratch.yaml --backend slurm  # a Slurm job array

Where jobs run (study_backends.py): on this machine, one at a time without a GPU, one per GPU (or per group of
`resources.gpus` GPUs) with GPUs; on Slurm, as a job array through submitit. How one job is started, recorded and
logged: study_jobs.py. Reading and checking a study file: study_spec.py. A `search:` section (search.py) runs an
Optuna search on a held-out slice of train before the grid, and the searched arms train with its best values.

A study file (YAML; paths are relative to the directory the study is run from, the repository root, like
every recipe's paths):

    name: mnli-pretrained-vs-scratch-cpu     # the W&B group of every job, and the report's title
    script: scripts/run_mnli.py              # the task script each job runs
    launch_config: configs/accelerate_cpu.yaml  # `accelerate launch --config_file ...`; null: plain `python script`
    recipe: configs/mnli/minilm_cpu.yaml     # base recipe of every arm
    overrides: {save_strategy: steps, save_steps: 100}   # recipe keys changed for every arm
    seeds: [42, 43]
    arms:                                    # what is compared; an arm may name its own `recipe`
      - {name: pretrained, job_type: pretrained}
      - name: scratch
        job_type: scratch
        overrides: {model_name_or_path: null, scratch_preset: minilm-l6-h384, tokenizer_name: minilm}
    grid:                                    # optional: every arm × every combination of these values
      learning_rate: {lr5e-4: 5.0e-4, lr1e-4: 1.0e-4}   # label: value (or a plain list of values)
    baseline: pretrained                     # optional; default the first arm
    output_root: outputs/studies/mnli-pretrained-vs-scratch-cpu   # optional; jobs in <output_root>/<arm>/seed<k>
    report_dir: outputs/studies/mnli-pretrained-vs-scratch-cpu/report   # optional; default <output_root>/report
    resources: {gpus: 1, cpus: 8, mem_gb: 32, time_min: 240, partition: gpu}   # optional; see study_backends.py
    search: {n_trials: 6, objective: eval_heldout_accuracy, space: {...}}      # optional; see search.py

An override set to null removes the key from the recipe (to swap model_name_or_path for scratch_preset).

How a study resumes: a job is finished when its all_results.json exists (the pipeline writes it last), and is
then skipped. Every job runs with `--resume_from_checkpoint auto`, so a job that was killed restarts from its
newest complete checkpoint (when the recipe saves checkpoints: save_strategy steps or epoch), or from the start.
A job keeps its W&B run id across restarts (WANDB_RUN_ID, WANDB_RESUME=allow): one W&B run per job.
Jobs run seed by seed (every arm once before any arm twice), so an interrupted study already compares all arms.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys

from pipelines import reports, search, study_backends
from pipelines.study_jobs import check_finished_recipe, job_command, run_jobs_one_at_a_time
from pipelines.study_spec import Arm, Job, Study, StudyError, load_study, select  # noqa: F401 (this module's API)

logger = logging.getLogger("pipelines")

# --------------------------------------------------------------------------------------------------------------
# Running the jobs
# --------------------------------------------------------------------------------------------------------------


def run_study(
    study: Study,
    dry_run: bool = False,
    keep_going: bool = False,
    report_only: bool = False,
    wandb_report: bool = False,
    backend: str = "local",
    gpus: list[int] | None = None,
    search_only: bool = False,
) -> int:
    """Run the search (if the study has one), then the unfinished jobs on the chosen backend, then write the report.

    Returns the exit status.
    """
    if study.search is not None and not report_only:
        status = run_searches(
            study, backend=backend, gpus=gpus, dry_run=dry_run, keep_going=keep_going, search_only=search_only
        )
        if status != 0 or search_only:
            return status
        if not dry_run:
            # The searched arms now read the chosen values; the same part of the study (--arms, --seeds) as before.
            study = select(load_study(study.path), [arm.name for arm in study.arms], study.seeds)
    jobs = study.jobs()
    done = [j for j in jobs if j.finished]
    print(
        f"Study {study.name}: {len(study.arms)} arms × {len(study.seeds)} seeds = {len(jobs)} jobs, "
        f"{len(done)} finished, in {study.output_root}",
        flush=True,
    )
    for number, job in enumerate(jobs, 1):
        label = f"[{number}/{len(jobs)}] {job.run_name}"
        if job.finished:
            check_finished_recipe(study, job)
            print(f"{label}: finished, skipping ({job.output_dir / 'all_results.json'})", flush=True)
        elif report_only:
            print(f"{label}: not finished", flush=True)
        elif dry_run:
            print(f"{label}: would run\n    {shlex.join(job_command(study, job))}", flush=True)
    if dry_run:
        return 0
    unfinished = [j for j in jobs if not j.finished]
    failed: list[Job] | None = []
    if unfinished and not report_only:
        if backend == "local":
            slots = study_backends.gpu_slots(gpus, study.resources.get("gpus") or 1)
            if len(slots) > 1:
                failed = study_backends.run_jobs_on_gpus(study, jobs, slots, keep_going)
            else:  # no GPU, or room for one job: one at a time, here
                failed = run_jobs_one_at_a_time(study, jobs, keep_going)
        else:
            failed = study_backends.run_jobs_with_submitit(study, jobs, cluster=backend)
        if failed is None:
            return 130
    finished = [j for j in jobs if j.finished]
    if failed:
        print(
            f"{len(failed)} job(s) failed: {', '.join(j.run_name for j in failed)}. Fix the cause and run the same "
            "command again: finished jobs are skipped, interrupted ones resume.",
            file=sys.stderr,
        )
    if not finished:
        if study.search is not None and study.search.storage_exists():
            study.report_dir.mkdir(parents=True, exist_ok=True)
            search.add_search_to_report(study)
            print(f"Search report: {study.report_dir / 'search.md'}", flush=True)
        print("No finished jobs yet, so no study report.", file=sys.stderr)
        return 1
    status = write_report(study, finished, wandb_report)
    return 1 if failed or len(finished) < len(jobs) else status


def run_searches(
    study,
    backend: str = "local",
    gpus: list[int] | None = None,
    dry_run: bool = False,
    keep_going: bool = False,
    search_only: bool = False,
) -> int:
    """Run the study's search (search.py; this process is one worker), then write each arm's best values and table."""
    spec = study.search
    if dry_run:
        for arm in spec.arms:
            print(
                f"Search {arm}: {spec.n_trials} trials of {spec.space} by {spec.objective} ({spec.direction}), "
                f"storage {spec.storage}; trials in {spec.folders[arm]}",
                flush=True,
            )
        return 0
    if all(search.best_file(spec, arm).is_file() for arm in spec.arms):
        return 0
    slots = study_backends.gpu_slots(gpus, study.resources.get("gpus") or 1) if backend == "local" else []
    if backend != "local" or len(slots) > 1:  # workers as submitit jobs: one per GPU slot, or spec.workers on Slurm
        status = study_backends.run_search_workers(
            study, cluster=backend, slots=slots, n_workers=spec.workers, keep_going=keep_going
        )
    else:  # this process is the (or a) worker
        status = search.run_search_worker(study, keep_going)
    if status != 0:
        return status
    for arm in spec.arms:
        optuna_study = search.open_search(spec, study, arm)
        n_finished = len(search.finished_trials(optuna_study))
        if n_finished < spec.n_trials:
            print(
                f"Search {arm}: {n_finished} of {spec.n_trials} trials finished, others are still running in other "
                "workers; run the study again when they are done.",
                file=sys.stderr,
            )
            return 0 if search_only else 1
        record = search.write_best(spec, arm, optuna_study)
        print(search.search_table(spec, arm, optuna_study), flush=True)
        print(
            f"Best of {arm}: {record['params']} ({spec.objective} {record['value']:.4f}, trial {record['trial']}) "
            f"-> {search.best_file(spec, arm)}",
            flush=True,
        )
    return 0


def write_report(study: Study, finished: list[Job], wandb_report: bool) -> int:
    finished_arms = {j.arm.name for j in finished}
    baseline = study.baseline if study.baseline in finished_arms else None
    sources = [(j.arm.name, str(j.output_dir)) for j in finished]
    summary = reports.build_report(sources, study.report_dir, title=f"Study {study.name}", baseline=baseline)
    if study.search is not None:
        search.add_search_to_report(study)
    print(f"Report: {study.report_dir / 'report.html'} (and report.md, summary.json)", flush=True)
    if wandb_report:
        return reports.publish_wandb_report(summary, study.report_dir, sources)
    return 0


def comma_separated_ints(option: str, what: str, example: str):
    """An argparse `type` for a list of integers such as 0,1,2,3; a bad one names the option and an example."""

    def parse(text: str) -> list[int]:
        try:
            return [int(value) for value in text.split(",") if value.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} takes {what} separated by commas, e.g. {example}; got {text!r}")

    return parse


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(format="%(levelname)s %(message)s", level=logging.INFO)
    logger.setLevel(logging.INFO)
    parser = argparse.ArgumentParser(
        prog="run_study.py",
        description="Run a study: its search (if any), then every arm × seed as one job, resumable, then the report.",
    )
    parser.add_argument("study", help="Study file, e.g. configs/studies/mnli_pretrained_vs_scratch_cpu.yaml")
    parser.add_argument(
        "--backend",
        choices=["local", "slurm", "submitit-local"],
        default="local",
        help="local: this machine, one job per GPU (or per `resources.gpus` GPUs), one at a time "
        "without a GPU. slurm: a Slurm job array through submitit (pip install '.[cluster]'). "
        "submitit-local: the Slurm path run by submitit's local executor (no cluster; for testing).",
    )
    parser.add_argument(
        "--gpus",
        type=comma_separated_ints("--gpus", "GPU numbers", "0,1,2,3"),
        default=None,
        help="Local backend: the GPUs to use, e.g. 0,1,2,3 (default: every visible GPU).",
    )
    parser.add_argument(
        "--search-only",
        action="store_true",
        help="Only run search trials (a search worker: start several, on any machines that reach "
        "the search's storage), not the grid.",
    )
    parser.add_argument("--dry-run", action="store_true", help="Print the jobs and their commands; run nothing.")
    parser.add_argument("--keep-going", action="store_true", help="After a failed job, go on with the others.")
    parser.add_argument("--report-only", action="store_true", help="Only (re)write the report from the finished jobs.")
    parser.add_argument(
        "--wandb-report", action="store_true", help="Also create a W&B Report (credentials + wandb-workspaces)."
    )
    parser.add_argument(
        "--arms",
        type=lambda text: [name for name in text.split(",") if name],
        default=None,
        help="Only these arms, e.g. scratch,distilled (the baseline must be one); the report covers them only.",
    )
    parser.add_argument(
        "--seeds",
        type=comma_separated_ints("--seeds", "seeds", "43,44"),
        default=None,
        help="Only these seeds, e.g. 42 or 43,44; the report covers them only.",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    # A StudyError or ReportError reaches scripts/run_study.py's cli.run: `error: <message>`, exit status 2.
    study = select(load_study(args.study), args.arms, args.seeds)
    if args.search_only and study.search is None:
        raise StudyError(f"{study.path}: --search-only, but the study has no 'search' section")
    return run_study(
        study,
        dry_run=args.dry_run,
        keep_going=args.keep_going,
        report_only=args.report_only,
        wandb_report=args.wandb_report,
        backend=args.backend,
        gpus=args.gpus,
        search_only=args.search_only,
    )
