"""Comparison reports: finished runs in, a folder with report.md, report.html, summary.json and PNG plots out.

    python scripts/compare.py outputs/mnli/minilm outputs/mnli/scratch --output-dir outputs/reports/mnli
    python scripts/compare.py pretrained=outputs/a/seed42 pretrained=outputs/a/seed43 scratch=outputs/b/seed42 ...

What a report holds, in order:
1. the runs, grouped into arms (one model / recipe, several seeds),
2. final metrics per arm as mean ± std over seeds,
3. for each arm against the baseline arm: the difference of the per-example scores with a paired bootstrap
   95% interval, and McNemar's test on per-example correctness for each seed pair (statistics in stats.py),
4. plots: training and eval loss curves overlaid, accuracy or EM/F1 over steps, final metrics with error bars,
5. the examples that one arm gets right in every seed and the other gets wrong in every seed.

Where runs are read from:
- a run's output folder (all_results.json, log_history.json, run_info.json, predictions_<split>.jsonl),
- an offline W&B run folder (output_dir/wandb/offline-run-*), read with pipelines.tracking.read_offline_run,
- an online W&B run ("wandb:entity/project/run_id", needs credentials).
W&B runs give metrics and curves but no per-example predictions (only a sample table), so they take part in
the metrics table and plots but not in the paired statistics.

This module groups runs into arms and computes the numbers; reading runs is in report_runs.py, the plots in
report_plots.py, the Markdown/HTML document in report_render.py, the optional W&B Report in report_wandb.py; the
command line is scripts/compare.py.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
from pathlib import Path
from typing import Any

from pipelines import stats
from pipelines.report_plots import draw_plots
from pipelines.report_render import render
from pipelines.report_runs import (  # noqa: F401 (reading runs is part of this module's API)
    EVAL_LOSS_KEY,
    QUALITY_KEY,
    TABLE_KEY,
    ReportError,
    Run,
    history_from_wandb,
    parse_source,
    read_run,
)
from pipelines.report_wandb import publish_wandb_report  # noqa: F401 (scripts/compare.py calls it through here)

logger = logging.getLogger("pipelines")

REPO = Path(__file__).resolve().parent.parent

# Recipe keys that differ between the seeds of one arm by design: never used to tell arms apart.
PER_RUN_RECIPE_KEYS = {
    "seed",
    "data_seed",
    "output_dir",
    "run_name",
    "logging_dir",
    "resume_from_checkpoint",
    "report_to",
    "wandb_project",
    "wandb_group",
    "wandb_job_type",
    "wandb_tags",
    "wandb_mode",
    "overwrite_output_dir",
}
MODEL_RECIPE_KEYS = {"model_name_or_path", "scratch_preset"}  # already in the arm name through run_info["model"]


# --------------------------------------------------------------------------------------------------------------
# 1. Arms: runs that differ only by seed
# --------------------------------------------------------------------------------------------------------------


def short_model_name(model: str | None) -> str:
    if not model:
        return ""
    return model if model.startswith("scratch:") else Path(model).name or model


def name_arms(runs: list[Run]) -> None:
    """Give every run without an arm one: its job type and model, plus the recipe keys that tell such runs apart.

    Runs named explicitly (ARM=PATH, or by a study) keep their names.
    """
    unnamed = [r for r in runs if r.arm is None]
    recipes = [r.info.get("recipe", {}) for r in unnamed]
    keys = sorted({k for recipe in recipes for k in recipe} - PER_RUN_RECIPE_KEYS - MODEL_RECIPE_KEYS)
    varying = [k for k in keys if len({json.dumps(recipe.get(k), sort_keys=True) for recipe in recipes}) > 1]
    for run, recipe in zip(unnamed, recipes):
        parts = [run.info.get("job_type") or "", short_model_name(run.info.get("model"))]
        parts += [f"{k}={recipe.get(k)}" for k in varying]
        run.arm = " ".join(p for p in parts if p) or run.name


def group_arms(runs: list[Run]) -> dict[str, list[Run]]:
    """Arm name -> its runs, arms in the order they first appear, runs sorted by seed."""
    arms: dict[str, list[Run]] = {}
    for run in runs:
        arms.setdefault(run.arm, []).append(run)
    return {arm: sorted(members, key=lambda r: (r.seed is None, r.seed)) for arm, members in arms.items()}


# --------------------------------------------------------------------------------------------------------------
# 2. Numbers: final metrics per arm, paired comparisons against the baseline
# --------------------------------------------------------------------------------------------------------------


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def arm_metrics(runs: list[Run]) -> dict[str, dict]:
    """Every numeric final metric of the arm: mean, std (ddof=1, None for one seed), n, and the per-seed values."""
    metrics: dict[str, dict] = {}
    for key in dict.fromkeys(k for r in runs for k, v in r.results.items() if is_number(v)):
        values = [r.results[key] for r in runs if is_number(r.results.get(key))]
        mean, std = stats.mean_std(values)
        metrics[key] = {"mean": mean, "std": std, "n": len(values), "values": values}
    return metrics


def example_score(row: dict, task=None) -> tuple[Any, dict[str, float], bool] | None:
    """One line of a predictions file -> (example key, scores, correct), as the run's task scores it
    (pipelines/task_definitions/base.py: accuracy 0/1, a regression's absolute error, QA's EM/F1 on their 0-100 scale).
    None for a row without scores. Without a task, a line with gold and predicted is scored as a classification."""
    from pipelines.task_definitions.base import CLASSIFICATION, KINDS

    return (task.behaviour if task is not None else KINDS[CLASSIFICATION]).example_score(row)


def scored_examples(run: Run, split: str) -> dict[Any, tuple[dict[str, float], bool, dict]]:
    """Example key -> (scores, correct, row) for one split of one run."""
    task = run_task(run)
    scored = {}
    for row in run.predictions.get(split, []):
        result = example_score(row, task)
        if result is not None:
            key, scores, correct = result
            scored[key] = (scores, correct, row)
    return scored


def pair_seeds(baseline_runs: list[Run], other_runs: list[Run]) -> list[tuple[Run, Run]]:
    """Same seed with same seed; when the arms share no seed, in seed order."""
    other_by_seed = {r.seed: r for r in other_runs}
    pairs = [(b, other_by_seed[b.seed]) for b in baseline_runs if b.seed in other_by_seed]
    return pairs or list(zip(baseline_runs, other_runs))


def compare_arms(
    baseline: str,
    baseline_runs: list[Run],
    other: str,
    other_runs: list[Run],
    split: str,
    n_resamples: int,
    max_examples: int,
    texts: dict,
) -> dict | None:
    """Paired statistics of one arm against the baseline on one split; None when the runs lack per-example files."""
    base_scored = [scored_examples(r, split) for r in baseline_runs]
    task = run_task(baseline_runs[0])
    other_scored = [scored_examples(r, split) for r in other_runs]
    if not all(base_scored) or not all(other_scored):
        return None
    # Only examples that every run scored: a run evaluated on fewer examples (max_eval_samples) narrows the set.
    keys = set.intersection(*(set(s) for s in base_scored + other_scored))
    keys = [k for k in base_scored[0] if k in keys]  # file order
    if not keys:
        return None
    score_names = list(base_scored[0][keys[0]][0])
    differences = {}
    for name in score_names:
        result = stats.paired_bootstrap(
            [[s[k][0][name] for k in keys] for s in base_scored],
            [[s[k][0][name] for k in keys] for s in other_scored],
            n_resamples=n_resamples,
        )
        differences[name] = vars(result)

    scored_by_run = {id(run): scored for run, scored in zip(baseline_runs + other_runs, base_scored + other_scored)}
    mcnemar_tests = []
    for base_run, other_run in pair_seeds(baseline_runs, other_runs):
        base, oth = scored_by_run[id(base_run)], scored_by_run[id(other_run)]
        test = stats.mcnemar([base[k][1] for k in keys], [oth[k][1] for k in keys])
        mcnemar_tests.append(
            {
                "baseline_run": base_run.name,
                "other_run": other_run.name,
                "seeds": [base_run.seed, other_run.seed],
                **vars(test),
            }
        )

    # Examples one arm gets right in every seed and the other gets wrong in every seed: differences that do not
    # depend on the seed.
    def right_in_every_seed(scored_runs):
        return {k for k in keys if all(s[k][1] for s in scored_runs)}

    def wrong_in_every_seed(scored_runs):
        return {k for k in keys if not any(s[k][1] for s in scored_runs)}

    baseline_wins = right_in_every_seed(base_scored) & wrong_in_every_seed(other_scored)
    other_wins = right_in_every_seed(other_scored) & wrong_in_every_seed(base_scored)
    only_baseline = [k for k in keys if k in baseline_wins]  # in file order
    only_other = [k for k in keys if k in other_wins]
    return {
        "baseline": baseline,
        "arm": other,
        "split": split,
        "n_examples": len(keys),
        "differences": differences,
        "mcnemar": mcnemar_tests,
        "examples": {
            "baseline_right_arm_wrong": {
                "count": len(only_baseline),
                "shown": [
                    describe_example(k, base_scored, other_scored, texts, task) for k in only_baseline[:max_examples]
                ],
            },
            "arm_right_baseline_wrong": {
                "count": len(only_other),
                "shown": [
                    describe_example(k, base_scored, other_scored, texts, task) for k in only_other[:max_examples]
                ],
            },
        },
    }


# --------------------------------------------------------------------------------------------------------------
# 3. Example texts: what the model saw, for the examples one arm gets right and the other wrong
# --------------------------------------------------------------------------------------------------------------


def run_task(run: Run):
    """The run's Task (pipelines.task_definitions.base), or None for runs no task module describes (pretraining)."""
    from pipelines.task_definitions.base import UnknownTaskError, task_of_run

    try:
        return task_of_run(run.info, run.info.get("recipe", {}))
    except UnknownTaskError:
        return None


def local_texts(run: Run, split: str, task) -> dict[Any, dict]:
    """idx -> the example's text fields, from the local data files named in the run's recipe.

    Hub data is not downloaded for a report; without local files the examples are listed by idx only.
    """
    from pipelines.data_files import find_split_file, load_local_file

    recipe = run.info.get("recipe", {})
    path = recipe.get(f"{split}_file")
    if path is None and recipe.get("data_dir"):
        data_dir = Path(recipe["data_dir"])
        if not data_dir.is_dir() and (REPO / data_dir).is_dir():  # recipes' relative paths start at the repo root
            data_dir = REPO / data_dir
        path = find_split_file(data_dir, split)
    if path is None:
        return {}
    path = Path(path) if Path(path).exists() else REPO / path
    dataset = task.normalize(*load_local_file(path, split=split))
    columns = [dataset[name] for name in task.input_fields]
    return {idx: dict(zip(task.input_fields, texts)) for idx, *texts in zip(dataset["idx"], *columns)}


def load_texts(run: Run, split: str) -> dict[Any, dict]:
    task = run_task(run)
    if task is None or task.normalize is None:
        return {}  # QA prediction rows carry their question and gold answers already
    try:
        return local_texts(run, split, task)
    except Exception as error:  # a moved data file should not cost the report: list examples by idx
        logger.warning("Example texts for %s (%s) not loaded: %s", run.name, split, error)
        return {}


def describe_example(key, base_scored, other_scored, texts: dict, task=None) -> dict:
    """One example for the report: its text, the gold answer, and each arm's predictions (one per seed)."""
    from pipelines.task_definitions.base import CLASSIFICATION, KINDS

    row = base_scored[0][key][2]
    kind = task.behaviour if task is not None else KINDS[CLASSIFICATION]
    text = texts.get(key)
    gold, _ = kind.shown(row, task)
    example = {"key": key, "text": row.get("question") or (" ⟶ ".join(text.values()) if text else ""), "gold": gold}
    example["baseline_predicted"] = [kind.shown(s[key][2], task)[1] for s in base_scored]
    example["arm_predicted"] = [kind.shown(s[key][2], task)[1] for s in other_scored]
    return example


# --------------------------------------------------------------------------------------------------------------
# 4. The report
# --------------------------------------------------------------------------------------------------------------


def read_sources(sources) -> list[Run]:
    """Each source is a location (see read_run) or (arm, location); the arm, when given, names the run's arm."""
    runs = []
    for source in sources:
        arm, location = source if isinstance(source, tuple) else parse_source(str(source))
        run = read_run(str(location))
        run.arm = arm
        runs.append(run)
    return runs


def build_report(
    sources,
    output_dir,
    title: str | None = None,
    baseline: str | None = None,
    max_examples: int = 10,
    n_resamples: int = 2000,
) -> dict:
    """Read the runs, compute everything, write report.md, report.html, summary.json and the PNGs. Returns the summary.

    sources: run locations (see read_run), each optionally as (arm, location) to name its arm.
    """
    runs = read_sources(sources)
    if not runs:
        raise ReportError("No runs to compare")
    name_arms(runs)
    arms = group_arms(runs)
    baseline = baseline or next(iter(arms))
    if baseline not in arms:
        raise ReportError(f"Baseline '{baseline}' is not one of the arms: {', '.join(arms)}")
    groups = sorted({str(r.info.get("group")) for r in runs if r.info.get("group")})
    title = title or (f"Comparison: {', '.join(groups)}" if groups else "Comparison of runs")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    notes = []

    metrics = {arm: arm_metrics(members) for arm, members in arms.items()}
    splits = list(dict.fromkeys(split for r in runs for split in r.predictions))
    without_predictions = [r.name for r in runs if not r.predictions]
    if without_predictions:
        notes.append(
            f"No per-example predictions for {', '.join(without_predictions)} (e.g. read from W&B): "
            "left out of the paired statistics."
        )
    texts = {split: load_texts(arms[baseline][0], split) for split in splits}
    comparisons = []
    for arm, members in arms.items():
        if arm == baseline:
            continue
        for split in splits:
            comparison = compare_arms(
                baseline, arms[baseline], arm, members, split, n_resamples, max_examples, texts[split]
            )
            if comparison is not None:
                comparisons.append(comparison)

    plots = draw_plots(arms, metrics, output_dir, notes)

    summary = {
        "title": title,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "baseline": baseline,
        "groups": groups,
        "bootstrap_resamples": n_resamples,
        "notes": notes,
        "runs": [
            {
                "name": r.name,
                "arm": r.arm,
                "seed": r.seed,
                "source": r.source,
                "task": r.info.get("task"),
                "model": r.info.get("model"),
                "job_type": r.info.get("job_type"),
                "group": r.info.get("group"),
                "parameters": r.info.get("parameters"),
                "metrics": {k: v for k, v in r.results.items() if is_number(v)},
            }
            for r in runs
        ],
        "arms": {
            arm: {"runs": [r.name for r in members], "seeds": [r.seed for r in members], "metrics": metrics[arm]}
            for arm, members in arms.items()
        },
        "comparisons": comparisons,
        "plots": [name for name, _ in plots],
    }
    document = render(summary, arms, metrics, plots)
    (output_dir / "report.md").write_text(document.markdown(), encoding="utf-8")
    (output_dir / "report.html").write_text(document.html(output_dir, title), encoding="utf-8")
    (output_dir / "summary.json").write_text(
        json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
    )
    logger.info("Report written to %s (report.md, report.html, summary.json)", output_dir)
    return summary
