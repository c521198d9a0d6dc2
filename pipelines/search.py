"""Hyperparameter searches in a study: Optuna chooses the values, each trial is one of our ordinary jobs.

Why Optuna directly and not `Trainer.hyperparameter_search`: a trial here is the same subprocess job as a study's
(recipe file, `accelerate launch`, checkpoints and resume, one W&B run, all_results.json), so trials run on any
backend and survive kills; hyperparameter_search trains in-process through model_init and cannot do that.

    search:
      arms: [scratch]                      # the arms searched (default: every arm), each with the same budget
      n_trials: 6                          # finished trials per arm
      objective: eval_heldout_accuracy     # a key of the trial's all_results.json, measured on TRAIN held out
      direction: maximize
      seed: 42                             # the training seed of every trial
      overrides: {heldout_train_samples: 2000, max_train_samples: 6000}   # only for the trials
      space:
        learning_rate: {low: 3.0e-4, high: 3.0e-3, log: true}   # float (int when low, high and step are ints)
        warmup_steps: {low: 0.0, high: 0.2}
        num_train_epochs: [1, 2]                                # a list: one of these values
      storage: sqlite:///outputs/studies/x/search.db   # optional; any URL Optuna accepts (e.g. postgresql://...)
      workers: 4                           # --backend slurm: worker jobs sharing the search (default 1)

The objective is never measured on dev: a searched arm's trials must hold out part of train
(`heldout_train_samples` for MNLI, `heldout_from_file` for QA). Trials live in <output_root>/search/<arm>/trial-<n>.
The default storage is SQLite in the study folder, so a killed search resumes where it was: finished trials are
kept, and a trial that was cut off is run again with the same values, from its last checkpoint (Ctrl-C: at the
next start; a killed worker: once its heartbeat is `heartbeat_s` x 2 old). Several workers share one search
through the same storage: `run_study.py <study> --search-only` on each; on a machine with GPUs, run_study.py starts
one worker per GPU slot, and with `--backend slurm`, `workers` Slurm jobs (a killed worker's trial is retried by
another worker once its heartbeat is stale; if its first worker in fact still runs it, the folder's lock says so and
the retry is pruned rather than run twice, run_lock.py). When an arm's search has `n_trials`
finished trials, its best values go to <output_root>/search/<arm>/best.yaml, which that arm's recipe then reads.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import yaml

from pipelines import run_lock
from pipelines.study_jobs import job_command, prepare_job, run_job

# Reading a search's specification lives in study_spec; these names stay importable from here.
from pipelines.study_spec import Arm, Job, SearchSpec, StudyError, best_file  # noqa: F401

logger = logging.getLogger("pipelines")


def suggest(trial, key: str, dimension: Any):
    if isinstance(dimension, list):
        return trial.suggest_categorical(key, dimension)
    low, high, step = dimension["low"], dimension["high"], dimension.get("step")
    if all(isinstance(v, int) for v in (low, high, step or 1)):
        return trial.suggest_int(key, low, high, step=step or 1, log=bool(dimension.get("log")))
    return trial.suggest_float(key, low, high, step=step, log=bool(dimension.get("log")))


# --------------------------------------------------------------------------------------------------------------
# Best values: where the arms read them
# --------------------------------------------------------------------------------------------------------------


def write_best(spec: SearchSpec, arm: str, optuna_study) -> dict:
    best = optuna_study.best_trial
    record = {
        "params": best.params,
        "objective": spec.objective,
        "value": best.value,
        "trial": best.number,
        "trial_folder": best.user_attrs.get("folder"),
        "finished_trials": len(finished_trials(optuna_study)),
    }
    header = (
        f"# Written by the search of arm '{arm}': the values of its best trial by {spec.objective} "
        f"({spec.direction}); the arm's jobs read them. Delete this file to search again.\n"
    )
    best_file(spec, arm).write_text(header + yaml.safe_dump(record, sort_keys=False), encoding="utf-8")
    return record


# --------------------------------------------------------------------------------------------------------------
# Running trials
# --------------------------------------------------------------------------------------------------------------


class TrialFailed(RuntimeError):
    pass


def import_optuna():
    try:
        import optuna
    except ImportError as error:
        raise StudyError(
            "A study with a search needs optuna: pip install 'pipelines[search]' (or pip install optuna)"
        ) from error
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeat, plot_slice
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def open_search(spec: SearchSpec, study, arm: str):
    """The arm's Optuna study in the shared storage (created by whichever worker comes first)."""
    optuna = import_optuna()
    if spec.storage.startswith("sqlite:///"):
        Path(spec.storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(5):
        try:
            storage = optuna.storages.RDBStorage(
                spec.storage,
                heartbeat_interval=spec.heartbeat_s,
                grace_period=2 * spec.heartbeat_s,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3),
            )
            break
        except Exception:  # noqa: BLE001 - workers started together race to create the tables; the loser retries
            if attempt == 4:
                raise
            time.sleep(1 + random.random() * 2)
    # TPE after n_trials // 2 random trials; constant_liar keeps parallel workers from proposing the same point.
    sampler = optuna.samplers.TPESampler(
        seed=spec.sampler_seed, constant_liar=True, n_startup_trials=max(1, min(10, spec.n_trials // 2))
    )
    return optuna.create_study(
        study_name=f"{study.name}/{arm}",
        storage=storage,
        sampler=sampler,
        direction=spec.direction,
        load_if_exists=True,
    )


def finished_trials(optuna_study) -> list:
    import optuna

    return optuna_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def requeue_interrupted(optuna_study) -> None:
    """A trial stopped by Ctrl-C is failed by Optuna; queue its values again (same folder, so it resumes)."""
    import optuna

    trials = optuna_study.get_trials(deepcopy=False)
    resumed = {t.user_attrs.get("resumes") for t in trials}
    for trial in trials:
        if (
            trial.state == optuna.trial.TrialState.FAIL
            and trial.user_attrs.get("interrupted")
            and trial.number not in resumed
        ):
            optuna_study.enqueue_trial(
                trial.params, user_attrs={"folder": trial.user_attrs["folder"], "resumes": trial.number}
            )


def trial_objective(spec: SearchSpec, study, arm_name: str):
    arm = next(a for a in study.arms if a.name == arm_name)
    worker = f"{socket.gethostname()}:{os.getpid()}"

    def objective(trial) -> float:
        params = {key: suggest(trial, key, dimension) for key, dimension in spec.space.items()}
        folder = trial.user_attrs.get("folder") or f"trial-{trial.number}"  # a retried trial keeps its folder
        trial.set_user_attr("folder", folder)
        trial.set_user_attr("worker", worker)
        recipe = {**arm.recipe, **spec.overrides, **params}
        # W&B: the study's group; job type search-<arm>; the trial number as a tag, so the UI groups trials.
        recipe["wandb_tags"] = [*recipe.get("wandb_tags", []), "search", f"trial-{trial.number}"]
        trial_arm = Arm(
            name=f"{arm.name}-{folder}",
            job_type=f"search-{arm.name}",
            recipe=recipe,
            recipe_source=f"{arm.recipe_source} + search.overrides + trial {trial.number}",
        )
        job = Job(trial_arm, spec.seed, spec.folders[arm.name] / folder)
        holder = run_lock.holder(job.output_dir)
        if holder is not None and not job.finished:  # its earlier worker still runs it (a stale heartbeat)
            print(
                f"[{arm.name} trial {trial.number}] skipped: another run holds {job.output_dir}: "
                f"{run_lock.describe(holder)}",
                flush=True,
            )
            raise import_optuna().TrialPruned(f"{job.output_dir} is held by another run")
        if not job.finished:
            print(f"[{arm.name} trial {trial.number}] {params} -> {job.output_dir} (log: study_job.log)", flush=True)
            try:
                status = run_job(job_command(study, job), prepare_job(study, job), job.output_dir / "study_job.log")
            except KeyboardInterrupt:
                trial.set_user_attr("interrupted", True)
                raise
            if status != 0 or not job.finished:
                raise TrialFailed(
                    f"trial {trial.number} of arm '{arm.name}' failed (exit status {status}); "
                    f"log: {job.output_dir / 'study_job.log'}"
                )
        results = json.loads((job.output_dir / "all_results.json").read_text(encoding="utf-8"))
        if not isinstance(results.get(spec.objective), (int, float)):
            raise TrialFailed(
                f"{job.output_dir / 'all_results.json'} has no '{spec.objective}' (search.objective); "
                f"it has: {', '.join(sorted(results))}"
            )
        print(f"[{arm.name} trial {trial.number}] {spec.objective} = {results[spec.objective]:.4f}", flush=True)
        return float(results[spec.objective])

    return objective


def run_search_worker(study, keep_going: bool = False) -> int:
    """Run trials of every searched arm until each has n_trials finished ones (counting other workers' trials)."""
    optuna = import_optuna()
    spec = study.search
    for arm in spec.arms:
        optuna_study = open_search(spec, study, arm)
        optuna.storages.fail_stale_trials(optuna_study)
        requeue_interrupted(optuna_study)

        taken = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING)

        def stop_when_budget_taken(optuna_study, trial) -> None:
            # Finished and running trials (of every worker) count: the workers together run n_trials.
            if len(optuna_study.get_trials(deepcopy=False, states=taken)) >= spec.n_trials:
                optuna_study.stop()

        to_start = spec.n_trials - len(optuna_study.get_trials(deepcopy=False, states=taken))
        print(
            f"Search {study.name}/{arm}: {len(finished_trials(optuna_study))} of {spec.n_trials} trials finished "
            f"({spec.storage})",
            flush=True,
        )
        if to_start > 0:
            try:
                optuna_study.optimize(
                    trial_objective(spec, study, arm),
                    n_trials=to_start,
                    callbacks=[stop_when_budget_taken],
                    catch=(TrialFailed,) if keep_going else (),
                )
            except TrialFailed as error:
                print(f"error: {error}", file=sys.stderr)
                return 1
            except KeyboardInterrupt:
                print("\nSearch interrupted. Run the same command again to resume it.", file=sys.stderr)
                return 130
    return 0


# --------------------------------------------------------------------------------------------------------------
# The search in the report: a table and objective against each parameter
# --------------------------------------------------------------------------------------------------------------


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 or abs(value) >= 1e3 else f"{value:.4g}"
    return "" if value is None else str(value)


def search_table(spec: SearchSpec, arm: str, optuna_study) -> str:
    """A Markdown table of the arm's trials, best first."""
    keys = list(spec.space)
    header = f"| trial | {' | '.join(keys)} | {spec.objective} | state | folder |"
    rows = [header, "|" + "---|" * (len(keys) + 4)]
    sign = -1 if spec.direction == "maximize" else 1
    trials = sorted(
        optuna_study.get_trials(deepcopy=False), key=lambda t: (t.value is None, sign * (t.value or 0), t.number)
    )
    best = optuna_study.best_trial.number if finished_trials(optuna_study) else None
    for t in trials:
        mark = " (best)" if t.number == best else ""
        rows.append(
            f"| {t.number}{mark} | {' | '.join(format_value(t.params.get(k)) for k in keys)} | "
            f"{format_value(t.value)} | {t.state.name} | {t.user_attrs.get('folder', '')} |"
        )
    return (
        f"Search of arm '{arm}' ({len(finished_trials(optuna_study))} finished trials, "
        f"{spec.direction} {spec.objective}):\n\n" + "\n".join(rows)
    )


def plot_search(spec: SearchSpec, arm: str, optuna_study, path: Path) -> bool:
    """Objective against each parameter (Optuna's slice plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as optuna_plots

    if not finished_trials(optuna_study):
        return False
    axes = optuna_plots.plot_slice(optuna_study, params=list(spec.space), target_name=spec.objective)
    figure = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
    figure.suptitle(f"Search of arm {arm}: {spec.objective} against each parameter")
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return True


def add_search_to_report(study) -> None:
    """Write search.md and search_<arm>.png into the report folder and append the tables to report.md."""
    import_optuna()
    spec = study.search
    sections = [
        "## Hyperparameter search",
        "",
        f"Objective {spec.objective} ({spec.direction}), measured on TRAIN held out (never dev); "
        f"{spec.n_trials} trials per arm; storage {spec.storage}.",
        "",
    ]
    for arm in spec.arms:
        optuna_study = open_search(spec, study, arm)
        sections += [search_table(spec, arm, optuna_study), ""]
        plot = study.report_dir / f"search_{arm}.png"
        if plot_search(spec, arm, optuna_study, plot):
            sections += [f"![{spec.objective} against the parameters]({plot.name})", ""]
    text = "\n".join(sections) + "\n"
    (study.report_dir / "search.md").write_text(text, encoding="utf-8")
    report = study.report_dir / "report.md"
    if report.is_file():
        report.write_text(report.read_text(encoding="utf-8").rstrip() + "\n\n" + text, encoding="utf-8")
