"""Studies: a grid of jobs (arms × seeds), resumable, ending with the comparison report; optionally a search first.

    python scripts/run_study.py configs/studies/mnli_pretrained_vs_scratch_cpu.yaml
    python scripts/run_study.py configs/studies/mnli_pretrained_vs_scratch_cpu.yaml --dry-run   # the plan only
    python scripts/run_study.py configs/studies/mnli_pretrained_vs_scratch.yaml --backend slurm  # a Slurm job array

Where jobs run (study_backends.py): on this machine, one at a time without a GPU, one per GPU (or per group of
`resources.gpus` GPUs) with GPUs; on Slurm, as a job array through submitit. How one job is started, recorded and
logged: study_jobs.py. A `search:` section (search.py) runs an Optuna search on a held-out slice of train before
the grid, and the searched arms train with its best values.

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
import difflib
import itertools
import logging
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipelines import reports, run_guard, search, study_backends
from pipelines.arguments import RecipeError, load_recipe
from pipelines.study_jobs import check_finished_recipe, job_command, run_jobs_one_at_a_time

logger = logging.getLogger("pipelines")

STUDY_KEYS = {"name", "description", "script", "launch_config", "recipe", "overrides", "seeds", "arms", "grid",
              "baseline", "output_root", "report_dir", "resources", "search"}
ARM_KEYS = {"name", "job_type", "recipe", "overrides"}
# Set per job on the command line, so they are dropped from the arm's recipe file.
PER_JOB_KEYS = ("output_dir", "seed", "run_name", "wandb_group", "wandb_job_type", "resume_from_checkpoint")


class StudyError(ValueError):
    """A study file that cannot be run; the message names the file and the key."""


@dataclass
class Arm:
    name: str
    job_type: str
    recipe: dict[str, Any]  # base recipe + study overrides + arm overrides + grid values, per-job keys removed
    recipe_source: str  # the recipe file it started from


@dataclass
class Job:
    arm: Arm
    seed: int
    output_dir: Path

    @property
    def run_name(self) -> str:
        return f"{self.arm.name}-seed{self.seed}"

    @property
    def finished(self) -> bool:
        return run_guard.holds_finished_run(self.output_dir)

    @property
    def checkpoints(self) -> list[Path]:
        return sorted(self.output_dir.glob("checkpoint-*/trainer_state.json")) if self.output_dir.is_dir() else []


@dataclass
class Study:
    name: str
    path: Path
    script: Path
    launch_config: Path | None
    arms: list[Arm]
    seeds: list[int]
    output_root: Path
    report_dir: Path
    baseline: str
    resources: dict[str, Any]  # per job: gpus, cpus, mem_gb, time_min, partition, ... (see study_backends.py)
    search: Any = None  # a search.SearchSpec when the study file has a `search:` section

    def jobs(self) -> list[Job]:
        return [Job(arm, seed, self.output_root / arm.name / f"seed{seed}") for seed in self.seeds for arm in self.arms]


# --------------------------------------------------------------------------------------------------------------
# Reading a study file
# --------------------------------------------------------------------------------------------------------------


def load_study(path: str | os.PathLike, check_files: bool = True) -> Study:
    """Read and check a study file: unknown keys, missing files, arm names, and each arm's merged recipe.

    check_files=False skips the file checks (and leaves recipes unloaded where their file is missing): for
    inspecting a study whose recipes another step will create.
    """
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"Study file not found: {path}")
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise StudyError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(spec, dict):
        raise StudyError(f"{path}: a study is a mapping (name, script, recipe, arms, seeds, ...)")
    check_keys(spec, STUDY_KEYS, str(path))
    for key in ("name", "script", "arms", "seeds"):
        if not spec.get(key):
            raise StudyError(f"{path}: '{key}' is required")
    name = str(spec["name"])
    seeds = spec["seeds"]
    if not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise StudyError(f"{path}: 'seeds' must be a list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise StudyError(f"{path}: 'seeds' repeats a seed: {seeds}")

    script = Path(spec["script"])
    launch_config = Path(spec["launch_config"]) if spec.get("launch_config") else None
    if check_files:
        require_file(script, "script", path)
        if launch_config is not None:
            require_file(launch_config, "launch_config", path)

    arms = expand_arms(spec, path, check_files)
    baseline = spec.get("baseline") or arms[0].name
    if baseline not in [a.name for a in arms]:
        raise StudyError(f"{path}: baseline '{baseline}' is not an arm; the arms are: {', '.join(a.name for a in arms)}")
    output_root = Path(spec.get("output_root") or f"outputs/studies/{name}")
    resources = study_backends.check_resources(spec.get("resources") or {}, path)
    study = Study(name=name, path=path, script=script, launch_config=launch_config, arms=arms, seeds=seeds,
                  output_root=output_root, report_dir=Path(spec.get("report_dir") or output_root / "report"),
                  baseline=baseline, resources=resources)
    if spec.get("search") is not None:
        study.search = search.parse_search(spec["search"], study)
        search.apply_best_values(study)  # the searched arms train with the values the search chose
    return study


def check_keys(mapping: dict, known: set[str], where: str) -> None:
    for key in mapping:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            raise StudyError(f"{where}: unknown key '{key}'." + (f" Did you mean '{close[0]}'?" if close else "")
                             + f" Known keys: {', '.join(sorted(known))}")


def require_file(file: Path, key: str, study_path: Path) -> None:
    if not file.is_file():
        raise StudyError(f"{study_path}: {key} '{file}' not found (relative to {Path.cwd()}; run studies from the "
                         "repository root)")


def expand_arms(spec: dict, path: Path, check_files: bool) -> list[Arm]:
    """The study's arms, each repeated for every combination of the grid's values, with merged recipes."""
    if not isinstance(spec["arms"], list):
        raise StudyError(f"{path}: 'arms' must be a list of mappings with a name")
    grid = grid_variants(spec.get("grid") or {}, path)
    arms, recipes = [], {}
    for index, arm_spec in enumerate(spec["arms"]):
        where = f"{path}: arms[{index}]"
        if not isinstance(arm_spec, dict) or not arm_spec.get("name"):
            raise StudyError(f"{where}: an arm is a mapping with at least a name")
        check_keys(arm_spec, ARM_KEYS, where)
        recipe_file = arm_spec.get("recipe") or spec.get("recipe")
        if not recipe_file:
            raise StudyError(f"{where}: no recipe (set 'recipe' for the study or for this arm)")
        if recipe_file not in recipes:
            if Path(recipe_file).is_file():
                try:
                    recipes[recipe_file] = load_recipe(recipe_file)
                except RecipeError as error:
                    raise StudyError(f"{where}: {error}") from error
            elif check_files:
                raise StudyError(f"{where}: recipe '{recipe_file}' not found (relative to {Path.cwd()}; run studies from "
                                 "the repository root)")
            else:
                recipes[recipe_file] = None
        for label, grid_overrides in grid:
            name = f"{arm_spec['name']}_{label}" if label else str(arm_spec["name"])
            base = recipes[recipe_file]
            recipe = merge(base or {}, spec.get("overrides"), arm_spec.get("overrides"), grid_overrides)
            if base is not None:
                check_model_keys(recipe, name, recipe_file, path)
            arms.append(Arm(name=name, job_type=str(arm_spec.get("job_type") or arm_spec["name"]), recipe=recipe,
                            recipe_source=str(recipe_file)))
    names = [a.name for a in arms]
    for name in names:
        if names.count(name) > 1:
            raise StudyError(f"{path}: two arms are named '{name}'")
        if "/" in name or "=" in name or name != name.strip() or " " in name:
            raise StudyError(f"{path}: arm name '{name}' is used as a folder name: no spaces, '/' or '='")
    return arms


def grid_variants(grid: dict, path: Path) -> list[tuple[str, dict]]:
    """[(label, overrides)] for every combination of the grid's values; [("", {})] without a grid."""
    if not isinstance(grid, dict):
        raise StudyError(f"{path}: 'grid' maps recipe keys to lists of values (or to label: value mappings)")
    axes = []
    for key, values in grid.items():
        if isinstance(values, dict):
            axes.append([(str(label), {key: value}) for label, value in values.items()])
        elif isinstance(values, list) and values:
            axes.append([(f"{key}-{value}", {key: value}) for value in values])
        else:
            raise StudyError(f"{path}: grid '{key}' must be a non-empty list of values or a label: value mapping")
    return [("_".join(label for label, _ in combo), {k: v for _, o in combo for k, v in o.items()})
            for combo in itertools.product(*axes)]


def merge(base: dict, *layers: dict | None) -> dict:
    """Apply override layers in order; a None value removes the key. Per-job keys are dropped (set on the command line)."""
    recipe = dict(base)
    for layer in layers:
        for key, value in (layer or {}).items():
            if value is None:
                recipe.pop(key, None)
            else:
                recipe[key] = value
    for key in PER_JOB_KEYS:
        recipe.pop(key, None)
    return recipe


def check_model_keys(recipe: dict, arm: str, recipe_file: str, path: Path) -> None:
    """Catch the commonest study mistake before hours of jobs: an arm with both (or neither) model keys."""
    has_model, has_preset = recipe.get("model_name_or_path") is not None, recipe.get("scratch_preset") is not None
    if has_model and has_preset:
        raise StudyError(f"{path}: arm '{arm}' sets both model_name_or_path and scratch_preset ({recipe_file} + overrides); "
                         "add 'model_name_or_path: null' to the arm's overrides to train from scratch")
    if not has_model and not has_preset:
        raise StudyError(f"{path}: arm '{arm}' has neither model_name_or_path nor scratch_preset")


# --------------------------------------------------------------------------------------------------------------
# Running the jobs
# --------------------------------------------------------------------------------------------------------------


def run_study(study: Study, dry_run: bool = False, keep_going: bool = False, report_only: bool = False,
              wandb_report: bool = False, backend: str = "local", gpus: list[int] | None = None,
              search_only: bool = False) -> int:
    """Run the search (if the study has one), then the unfinished jobs on the chosen backend, then write the report.

    Returns the exit status.
    """
    if study.search is not None and not report_only:
        status = search.run_searches(study, backend=backend, gpus=gpus, dry_run=dry_run, keep_going=keep_going,
                                     search_only=search_only)
        if status != 0 or search_only:
            return status
        if not dry_run:
            study = load_study(study.path)  # the searched arms now read the chosen values
    jobs = study.jobs()
    done = [j for j in jobs if j.finished]
    print(f"Study {study.name}: {len(study.arms)} arms × {len(study.seeds)} seeds = {len(jobs)} jobs, "
          f"{len(done)} finished, in {study.output_root}", flush=True)
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
        print(f"{len(failed)} job(s) failed: {', '.join(j.run_name for j in failed)}. Fix the cause and run the same "
              "command again: finished jobs are skipped, interrupted ones resume.", file=sys.stderr)
    if not finished:
        if study.search is not None and study.search.storage_exists():
            study.report_dir.mkdir(parents=True, exist_ok=True)
            search.add_search_to_report(study)
            print(f"Search report: {study.report_dir / 'search.md'}", flush=True)
        print("No finished jobs yet, so no study report.", file=sys.stderr)
        return 1
    status = write_report(study, finished, wandb_report)
    return 1 if failed or len(finished) < len(jobs) else status


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


def parse_gpus(text: str) -> list[int]:
    try:
        return [int(g) for g in text.split(",") if g.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--gpus takes GPU numbers separated by commas, e.g. 0,1,2,3; got {text!r}")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(format="%(levelname)s %(message)s", level=logging.INFO)
    logger.setLevel(logging.INFO)
    parser = argparse.ArgumentParser(prog="run_study.py", description="Run a study: its search (if any), then every "
                                     "arm × seed as one job, resumable, then the report.")
    parser.add_argument("study", help="Study file, e.g. configs/studies/mnli_pretrained_vs_scratch_cpu.yaml")
    parser.add_argument("--backend", choices=["local", "slurm", "submitit-local"], default="local",
                        help="local: this machine, one job per GPU (or per `resources.gpus` GPUs), one at a time "
                        "without a GPU. slurm: a Slurm job array through submitit (pip install '.[cluster]'). "
                        "submitit-local: the Slurm path run by submitit's local executor (no cluster; for testing).")
    parser.add_argument("--gpus", type=parse_gpus, default=None,
                        help="Local backend: the GPUs to use, e.g. 0,1,2,3 (default: every visible GPU).")
    parser.add_argument("--search-only", action="store_true",
                        help="Only run search trials (a search worker: start several, on any machines that reach "
                        "the search's storage), not the grid.")
    parser.add_argument("--dry-run", action="store_true", help="Print the jobs and their commands; run nothing.")
    parser.add_argument("--keep-going", action="store_true", help="After a failed job, go on with the others.")
    parser.add_argument("--report-only", action="store_true", help="Only (re)write the report from the finished jobs.")
    parser.add_argument("--wandb-report", action="store_true", help="Also create a W&B Report (credentials + wandb-workspaces).")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    # A StudyError or ReportError reaches scripts/run_study.py's cli.run: `error: <message>`, exit status 2.
    study = load_study(args.study)
    if args.search_only and study.search is None:
        raise StudyError(f"{study.path}: --search-only, but the study has no 'search' section")
    return run_study(study, dry_run=args.dry_run, keep_going=args.keep_going, report_only=args.report_only,
                     wandb_report=args.wandb_report, backend=args.backend, gpus=args.gpus, search_only=args.search_only)
