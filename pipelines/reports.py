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
"""

from __future__ import annotations

import argparse
import base64
import datetime
import html
import json
import logging
import math
import os
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines import stats, tracking

logger = logging.getLogger("pipelines")

REPO = Path(__file__).resolve().parent.parent

# Recipe keys that differ between the seeds of one arm by design: never used to tell arms apart.
PER_RUN_RECIPE_KEYS = {
    "seed", "data_seed", "output_dir", "run_name", "logging_dir", "resume_from_checkpoint", "report_to",
    "wandb_project", "wandb_group", "wandb_job_type", "wandb_tags", "wandb_mode", "overwrite_output_dir",
}
MODEL_RECIPE_KEYS = {"model_name_or_path", "scratch_preset"}  # already in the arm name through run_info["model"]

# Trainer log keys: eval losses (eval_loss, eval_matched_loss, ...) and the quality metrics plotted over steps
# and compared at the end. Macro-F1 stays in the tables but gets no plot of its own.
EVAL_LOSS_KEY = re.compile(r"^eval(_\w+?)?_loss$")
QUALITY_KEY = re.compile(r"^eval(_\w+?)?_(accuracy|exact_match|f1)$")
TABLE_KEY = re.compile(r"^(eval(_\w+?)?_(accuracy|macro_f1|exact_match|f1|loss)|train_loss|train_runtime|train_samples_per_second)$")


class ReportError(ValueError):
    """Runs that cannot be read or compared; the message says which and why."""


# --------------------------------------------------------------------------------------------------------------
# 1. Reading runs
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Run:
    name: str  # shown in tables: the output folder's name or the W&B run name
    source: str  # where it was read from
    info: dict  # run_info.json: task, model, pretrained, job_type, group, seed, parameters, recipe, environment
    results: dict  # final metrics: all_results.json or the W&B summary
    history: list[dict]  # Trainer log rows: {loss, step, ...} and {eval_matched_loss, step, ...}
    predictions: dict[str, list[dict]] = field(default_factory=dict)  # split -> rows of predictions_<split>.jsonl
    arm: str | None = None

    @property
    def seed(self):
        return self.info.get("seed", self.info.get("recipe", {}).get("seed"))


def read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ReportError(f"{path}: cannot be read as JSON: {error}") from error


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as error:
                    raise ReportError(f"{path}, line {number}: not JSON: {error}") from error
    return rows


def read_run_folder(folder: Path) -> Run:
    """A finished run's output folder. all_results.json is written last by the pipeline: no file, no finished run."""
    if not (folder / "all_results.json").is_file():
        raise ReportError(f"{folder}: no all_results.json, so not a finished run (still running, killed, or not a run folder)")
    info = read_json(folder / "run_info.json") if (folder / "run_info.json").is_file() else {}
    if (folder / "log_history.json").is_file():
        history = read_json(folder / "log_history.json")
    else:  # older runs: fall back on the W&B copy of the curves
        offline = tracking.find_offline_runs(folder)
        history = history_from_wandb(tracking.read_offline_run(offline[-1])["history"]) if offline else []
    predictions = {
        path.name[len("predictions_") : -len(".jsonl")]: read_jsonl(path) for path in sorted(folder.glob("predictions_*.jsonl"))
    }
    name = info.get("recipe", {}).get("run_name") or folder.name
    return Run(name=name, source=str(folder), info=info, results=read_json(folder / "all_results.json"),
               history=history, predictions=predictions)


def history_from_wandb(rows) -> list[dict]:
    """W&B history rows (train/loss, train/global_step, eval/matched_loss) -> Trainer log rows (loss, step, eval_matched_loss)."""
    converted = []
    for row in rows:
        out = {}
        for key, value in row.items():
            if key.startswith("_") or not isinstance(value, (int, float)):
                continue
            if key == "train/global_step":
                out["step"] = value
            elif key.startswith("train/") and "/" not in key[6:]:
                out[key[6:]] = value
            elif key.startswith("eval/") and "/" not in key[5:]:
                out["eval_" + key[5:]] = value
        if len(out) > 1 and "step" in out:
            converted.append(out)
    return converted


def final_metrics_from_summary(summary: dict) -> dict:
    """The flat final metrics that finish_run put in the summary (eval_matched_accuracy, ...), not the curves' last values."""
    return {k: v for k, v in summary.items() if "/" not in k and not k.startswith("_")}


def read_offline_wandb_run(folder: Path) -> Run:
    run = tracking.read_offline_run(folder)
    info = dict(run["config"].get("run_info") or {})
    info.setdefault("job_type", run["run"].get("job_type") or None)
    info.setdefault("group", run["run"].get("group") or None)
    return Run(name=run["run"].get("name") or folder.name, source=str(folder), info=info,
               results=final_metrics_from_summary(run["summary"]), history=history_from_wandb(run["history"]))


def read_online_wandb_run(path: str) -> Run:
    """An online run, "entity/project/run_id". Needs W&B credentials (WANDB_API_KEY or `wandb login`)."""
    import wandb

    try:
        run = wandb.Api().run(path)
    except Exception as error:  # no credentials, no network, no such run: all end here
        raise ReportError(f"W&B run {path}: cannot be read: {type(error).__name__}: {error}") from error
    info = dict(run.config.get("run_info") or {})
    info.setdefault("job_type", run.job_type)
    info.setdefault("group", run.group)
    return Run(name=run.name or path, source=f"wandb:{path}", info=info,
               results=final_metrics_from_summary(dict(run.summary_metrics)), history=history_from_wandb(run.scan_history()))


def read_run(location: str) -> Run:
    """A run folder, an offline W&B run folder (contains run-*.wandb), or "wandb:entity/project/run_id"."""
    if location.startswith("wandb:"):
        return read_online_wandb_run(location[len("wandb:") :])
    path = Path(location)
    if not path.exists():
        raise ReportError(f"{path}: no such run folder")
    if any(path.glob("run-*.wandb")):
        return read_offline_wandb_run(path)
    return read_run_folder(path)


def parse_source(text: str) -> tuple[str | None, str]:
    """"ARM=PATH" -> (ARM, PATH); a bare path (or one that exists as written) -> (None, PATH)."""
    if "=" in text and not Path(text).exists():
        arm, location = text.split("=", 1)
        if arm and "/" not in arm:
            return arm, location
    return None, text


# --------------------------------------------------------------------------------------------------------------
# 2. Arms: runs that differ only by seed
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
# 3. Numbers: final metrics per arm, paired comparisons against the baseline
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


REGRESSION_TOLERANCE = 0.5  # STS-B scores run 0-5; half a point counts as right for the paired tests


def example_score(row: dict) -> tuple[Any, dict[str, float], bool] | None:
    """One line of a predictions file -> (example key, scores, correct).

    Classification rows (idx, gold, predicted) score accuracy 0/1; regression rows (absolute_error) keep the error.
    QA rows (id, exact_match, f1) keep the metric's 0-100 scale, as in all_results.json; "correct" means an exact
    match. None for a row without scores.
    """
    if "exact_match" in row:
        if row["exact_match"] is None or row.get("f1") is None:
            return None
        return row["id"], {"exact_match": float(row["exact_match"]), "f1": float(row["f1"])}, row["exact_match"] >= 100
    if "absolute_error" in row:  # regression (STS-B): "correct" = within REGRESSION_TOLERANCE of the gold score
        error = float(row["absolute_error"])
        return row.get("idx", row.get("id")), {"absolute_error": error}, error <= REGRESSION_TOLERANCE
    if "gold" in row and "predicted" in row:
        correct = row["gold"] == row["predicted"]
        return row.get("idx", row.get("id")), {"accuracy": float(correct)}, correct
    return None


def scored_examples(run: Run, split: str) -> dict[Any, tuple[dict[str, float], bool, dict]]:
    """Example key -> (scores, correct, row) for one split of one run."""
    scored = {}
    for row in run.predictions.get(split, []):
        result = example_score(row)
        if result is not None:
            key, scores, correct = result
            scored[key] = (scores, correct, row)
    return scored


def pair_seeds(baseline_runs: list[Run], other_runs: list[Run]) -> list[tuple[Run, Run]]:
    """Same seed with same seed; when the arms share no seed, in seed order."""
    other_by_seed = {r.seed: r for r in other_runs}
    pairs = [(b, other_by_seed[b.seed]) for b in baseline_runs if b.seed in other_by_seed]
    return pairs or list(zip(baseline_runs, other_runs))


def compare_arms(baseline: str, baseline_runs: list[Run], other: str, other_runs: list[Run], split: str,
                 n_resamples: int, max_examples: int, texts: dict) -> dict | None:
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
        mcnemar_tests.append({"baseline_run": base_run.name, "other_run": other_run.name,
                              "seeds": [base_run.seed, other_run.seed], **vars(test)})

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
            "baseline_right_arm_wrong": {"count": len(only_baseline),
                                         "shown": [describe_example(k, base_scored, other_scored, texts, task) for k in only_baseline[:max_examples]]},
            "arm_right_baseline_wrong": {"count": len(only_other),
                                         "shown": [describe_example(k, base_scored, other_scored, texts, task) for k in only_other[:max_examples]]},
        },
    }


# --------------------------------------------------------------------------------------------------------------
# 4. Example texts: what the model saw, for the examples one arm gets right and the other wrong
# --------------------------------------------------------------------------------------------------------------


def run_task(run: Run):
    """The run's Task (pipelines.tasks.base), or None for runs no task module describes (pretraining)."""
    from pipelines.tasks.base import UnknownTaskError, task_of_run

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
    row = base_scored[0][key][2]
    example = {"key": key}
    if "question" in row:  # QA
        example.update(text=row["question"], gold=" | ".join(row.get("gold_answers") or []))
        show = str
    else:
        text = texts.get(key)
        show = task.label_name if task is not None else str
        example.update(text=" ⟶ ".join(text.values()) if text else "", gold=show(row["gold"]))
    example["baseline_predicted"] = [show(s[key][2]["predicted"]) for s in base_scored]
    example["arm_predicted"] = [show(s[key][2]["predicted"]) for s in other_scored]
    return example


# --------------------------------------------------------------------------------------------------------------
# 5. Plots (matplotlib, Agg backend: no display needed)
# --------------------------------------------------------------------------------------------------------------

LINE_STYLES = ["-", "--", ":", "-."]


def history_keys(arms: dict[str, list[Run]], pattern: re.Pattern) -> list[str]:
    keys = dict.fromkeys(k for runs in arms.values() for r in runs for row in r.history for k in row if pattern.match(k))
    return [k for k in keys if "macro_f1" not in k]


def plot_curves(arms: dict[str, list[Run]], keys: list[str], path: Path, title: str) -> bool:
    """One panel per history key, x = training step; one colour per arm, one line style per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in keys if any(k in row for runs in arms.values() for r in runs for row in r.history)]
    if not panels:
        return False
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.8 * rows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, key in zip(axes.flat, panels):
        for arm_index, (arm, runs) in enumerate(arms.items()):
            for seed_index, run in enumerate(runs):
                points = sorted((row["step"], row[key]) for row in run.history if key in row and "step" in row)
                if points:
                    steps, values = zip(*points)
                    ax.plot(steps, values, color=colors[arm_index % len(colors)], linestyle=LINE_STYLES[seed_index % 4],
                            marker="o" if len(points) < 8 else None, markersize=3, label=f"{arm} (seed {run.seed})")
        ax.set_title("train loss" if key == "loss" else key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(4, max(1, len(labels))), fontsize="small", frameon=False)
    figure.suptitle(title)
    figure.tight_layout(rect=(0, 0.04 + 0.03 * math.ceil(len(labels) / 4), 1, 0.96))
    figure.savefig(path, dpi=110, bbox_inches="tight")  # keep a legend placed outside the axes in the image
    plt.close(figure)
    return True


def plot_final_metrics(arms: dict[str, list[Run]], metrics: dict[str, dict], path: Path) -> bool:
    """One panel per quality metric: a bar per arm at the mean, error bar ± std, a dot per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in dict.fromkeys(k for m in metrics.values() for k in m) if QUALITY_KEY.match(k) and "macro_f1" not in k]
    if not keys:
        return False
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    figure, axes = plt.subplots(1, len(keys), figsize=(max(4.5, 1.4 * len(arms) + 2) * len(keys), 4.2), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for i, arm in enumerate(arms):
            m = metrics[arm].get(key)
            if m is None:
                continue
            ax.bar(i, m["mean"], yerr=m["std"] or 0, capsize=6, color=colors[i % len(colors)], alpha=0.75)
            ax.scatter([i] * len(m["values"]), m["values"], color="black", s=12, zorder=3)
        ax.set_xticks(range(len(arms)), [fill(arm) for arm in arms], fontsize="small")
        ax.set_title(f"{key} (mean ± std over seeds)")
        ax.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110, bbox_inches="tight")  # keep a legend placed outside the axes in the image
    plt.close(figure)
    return True


def fill(text: str, width: int = 18) -> str:
    """Wrap long arm names onto several lines for axis labels."""
    return textwrap.fill(text, width, break_long_words=False)


# --------------------------------------------------------------------------------------------------------------
# 6. The document: one list of blocks, rendered as Markdown and as self-contained HTML
# --------------------------------------------------------------------------------------------------------------


class Document:
    def __init__(self):
        self.blocks: list[tuple] = []

    def heading(self, text: str, level: int = 2):
        self.blocks.append(("heading", level, text))

    def paragraph(self, text: str):
        self.blocks.append(("paragraph", text))

    def table(self, header: list[str], rows: list[list]):
        self.blocks.append(("table", header, rows))

    def image(self, filename: str, caption: str):
        self.blocks.append(("image", filename, caption))

    def markdown(self) -> str:
        out = []
        for kind, *rest in self.blocks:
            if kind == "heading":
                out.append("#" * rest[0] + " " + rest[1])
            elif kind == "paragraph":
                out.append(rest[0])
            elif kind == "table":
                header, rows = rest
                cell = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
                out.append("\n".join(["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
                                     + ["| " + " | ".join(map(cell, row)) + " |" for row in rows]))
            elif kind == "image":
                out.append(f"![{rest[1]}]({rest[0]})")
        return "\n\n".join(out) + "\n"

    def html(self, folder: Path, title: str) -> str:
        """Images are embedded (base64), so the one file can be mailed or attached on its own."""
        body = []
        for kind, *rest in self.blocks:
            if kind == "heading":
                body.append(f"<h{rest[0]}>{html.escape(rest[1])}</h{rest[0]}>")
            elif kind == "paragraph":
                text = html.escape(rest[0])
                text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)  # the Markdown the paragraphs use: **bold**, `code`
                text = re.sub(r"`(.+?)`", r"<code>\1</code>", text)
                body.append(f"<p>{text}</p>")
            elif kind == "table":
                header, rows = rest
                head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
                lines = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{lines}</tbody></table>")
            elif kind == "image":
                data = base64.b64encode((folder / rest[0]).read_bytes()).decode("ascii")
                body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(rest[1])}">'
                            f"<figcaption>{html.escape(rest[1])}</figcaption></figure>")
        style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
                 "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}th,td{border:1px solid #ccc;padding:4px 8px;"
                 "text-align:left;vertical-align:top}th{background:#f3f3f3}img{max-width:100%}code{background:#f3f3f3}"
                 "figcaption{color:#666;font-size:0.9em}")
        return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
                f"<style>{style}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")


def decimals(value: float) -> int:
    """Digits after the point: 4 for scores below 10 (accuracy 0.8123), 2 up to 1000 (EM 81.23), 0 above."""
    return 0 if abs(value) >= 1000 else 2 if abs(value) >= 10 else 4


def fmt(value, digits: int | None = None) -> str:
    if value is None:
        return "—"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if not isinstance(value, float):
        return str(value)
    return f"{value:,.{decimals(value) if digits is None else digits}f}"


def fmt_mean_std(m: dict | None) -> str:
    """'0.8123 ± 0.0040', the std with the mean's digits; the mean alone for one seed."""
    if m is None:
        return "—"
    digits = decimals(float(m["mean"]))
    return fmt(float(m["mean"]), digits) + ("" if m["std"] is None else f" ± {fmt(m['std'], digits)}")


def fmt_parameters(run: Run) -> str:
    total = run.info.get("parameters", {}).get("total")
    return f"{total / 1e6:.2f}M" if total else "—"


# --------------------------------------------------------------------------------------------------------------
# 7. The report
# --------------------------------------------------------------------------------------------------------------


def build_report(sources, output_dir, title: str | None = None, baseline: str | None = None, max_examples: int = 10,
                 n_resamples: int = 2000) -> dict:
    """Read the runs, compute everything, write report.md, report.html, summary.json and the PNGs. Returns the summary.

    sources: run locations (see read_run), each optionally as (arm, location) to name its arm.
    """
    runs = []
    for source in sources:
        arm, location = source if isinstance(source, tuple) else parse_source(str(source))
        run = read_run(str(location))
        run.arm = arm
        runs.append(run)
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
        notes.append(f"No per-example predictions for {', '.join(without_predictions)} (e.g. read from W&B): "
                     "left out of the paired statistics.")
    texts = {split: load_texts(arms[baseline][0], split) for split in splits}
    comparisons = []
    for arm, members in arms.items():
        if arm == baseline:
            continue
        for split in splits:
            comparison = compare_arms(baseline, arms[baseline], arm, members, split, n_resamples, max_examples, texts[split])
            if comparison is not None:
                comparisons.append(comparison)

    plots = []
    loss_keys = ["loss", *history_keys(arms, EVAL_LOSS_KEY)]
    if plot_curves(arms, loss_keys, output_dir / "loss_curves.png", "Training and evaluation loss"):
        plots.append(("loss_curves.png", "Training loss and evaluation loss over steps (one colour per arm, one line style per seed)"))
    if plot_curves(arms, history_keys(arms, QUALITY_KEY), output_dir / "eval_metrics.png", "Evaluation during training"):
        plots.append(("eval_metrics.png", "Evaluation metrics over steps"))
    else:
        notes.append("No evaluation during training in these runs (eval_strategy: no), so no metric curves over steps.")
    if plot_final_metrics(arms, metrics, output_dir / "final_metrics.png"):
        plots.append(("final_metrics.png", "Final metrics: mean over seeds, error bars ± std, dots are seeds"))

    summary = {
        "title": title,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "baseline": baseline,
        "groups": groups,
        "bootstrap_resamples": n_resamples,
        "notes": notes,
        "runs": [{"name": r.name, "arm": r.arm, "seed": r.seed, "source": r.source, "task": r.info.get("task"),
                  "model": r.info.get("model"), "job_type": r.info.get("job_type"), "group": r.info.get("group"),
                  "parameters": r.info.get("parameters"), "metrics": {k: v for k, v in r.results.items() if is_number(v)}}
                 for r in runs],
        "arms": {arm: {"runs": [r.name for r in members], "seeds": [r.seed for r in members], "metrics": metrics[arm]}
                 for arm, members in arms.items()},
        "comparisons": comparisons,
        "plots": [name for name, _ in plots],
    }
    document = render(summary, arms, metrics, plots)
    (output_dir / "report.md").write_text(document.markdown(), encoding="utf-8")
    (output_dir / "report.html").write_text(document.html(output_dir, title), encoding="utf-8")
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    logger.info("Report written to %s (report.md, report.html, summary.json)", output_dir)
    return summary


def render(summary: dict, arms: dict[str, list[Run]], metrics: dict, plots: list[tuple[str, str]]) -> Document:
    doc = Document()
    baseline = summary["baseline"]
    doc.heading(summary["title"], 1)
    doc.paragraph(f"{len(summary['runs'])} runs in {len(arms)} arms; baseline **{baseline}**. Generated {summary['created']}.")
    for note in summary["notes"]:
        doc.paragraph(f"Note: {note}")

    doc.heading("Runs")
    doc.table(["arm", "seed", "run", "model", "job type", "parameters", "source"],
              [[r.arm, fmt(r.seed), r.name, r.info.get("model", "—"), r.info.get("job_type") or "—", fmt_parameters(r), r.source]
               for members in arms.values() for r in members])

    doc.heading("Final metrics (mean ± std over seeds)")
    keys = [k for k in dict.fromkeys(k for m in metrics.values() for k in m) if TABLE_KEY.match(k)]
    # Quality first, then losses, then cost (runtime, throughput); the order within each kind is the runs' own.
    keys.sort(key=lambda k: 2 if k.startswith("train_") and not k.endswith("loss") else 1 if k.endswith("loss") else 0)
    doc.table(["arm", "seeds", *keys],
              [[arm, len(members), *(fmt_mean_std(metrics[arm].get(k)) for k in keys)] for arm, members in arms.items()])

    if summary["comparisons"]:
        doc.heading("Differences against the baseline")
        doc.paragraph(
            "Difference = arm − baseline of the per-example score, seeds averaged per example, on the examples every run "
            f"scored. 95% interval and p-value from a paired bootstrap over examples ({summary['bootstrap_resamples']} resamples). "
            "An interval that excludes 0 is a difference the evaluation set can resolve."
        )
        rows = []
        for c in summary["comparisons"]:
            for score, d in c["differences"].items():
                rows.append([f"{c['arm']} − {c['baseline']}", c["split"], score, fmt(d["baseline_mean"]), fmt(d["other_mean"]),
                             fmt(d["difference"]), f"[{fmt(d['ci_low'])}, {fmt(d['ci_high'])}]", stats.format_p(d["p_value"]),
                             fmt(c["n_examples"])])
        doc.table(["comparison", "split", "score", "baseline", "arm", "difference", "95% CI", "p (bootstrap)", "examples"], rows)

        doc.heading("McNemar's test on per-example correctness, per seed pair")
        doc.paragraph("b: baseline right, arm wrong; c: arm right, baseline wrong. Exact binomial test below 25 "
                      "disagreements, chi-square with continuity correction above.")
        doc.table(["comparison", "split", "seeds", "b", "c", "χ²", "p", "method"],
                  [[f"{c['arm']} vs {c['baseline']}", c["split"], " / ".join(map(str, t["seeds"])), t["baseline_only"],
                    t["other_only"], f"{t['statistic']:.3f}", stats.format_p(t["p_value"]), t["method"]]
                   for c in summary["comparisons"] for t in c["mcnemar"]])

    if plots:
        doc.heading("Plots")
        for filename, caption in plots:
            doc.image(filename, caption)

    if summary["comparisons"]:
        doc.heading("Examples one arm gets right and the other wrong")
        doc.paragraph("Right (or wrong) in every seed of the arm. Predictions are listed per seed, separated by ' / '.")
        for c in summary["comparisons"]:
            for direction, (right, wrong) in (("baseline_right_arm_wrong", (c["baseline"], c["arm"])),
                                              ("arm_right_baseline_wrong", (c["arm"], c["baseline"]))):
                examples = c["examples"][direction]
                doc.heading(f"{c['split']}: {right} right, {wrong} wrong ({examples['count']} examples)", 3)
                if examples["shown"]:
                    doc.table(["example", "text", "gold", f"{c['baseline']} predicted", f"{c['arm']} predicted"],
                              [[e["key"], e["text"] or "—", e["gold"], " / ".join(e["baseline_predicted"]), " / ".join(e["arm_predicted"])]
                               for e in examples["shown"]])
    return doc


# --------------------------------------------------------------------------------------------------------------
# 8. A W&B Report of the study (optional: needs credentials and the wandb-workspaces package)
# --------------------------------------------------------------------------------------------------------------


def wandb_metric_name(trainer_key: str) -> str:
    """Trainer log key -> the name the Trainer's W&B callback logs it under (loss -> train/loss, eval_x -> eval/x)."""
    return "eval/" + trainer_key[5:] if trainer_key.startswith("eval_") else "train/" + trainer_key


def create_wandb_report(summary: dict, markdown: str, runs: list[Run] | None = None, project: str | None = None,
                        entity: str | None = None) -> str:
    """Create a W&B Report of the study's group: line plots grouped by job type, and the local report's tables.

    Raises ReportError with what to do when the package or the credentials are missing.
    """
    if not tracking.has_wandb_credentials():
        raise ReportError("--wandb-report needs W&B credentials (WANDB_API_KEY or `wandb login`); the local report is complete.")
    try:
        import wandb_workspaces.reports.v2 as wr
    except ImportError as error:
        raise ReportError("--wandb-report needs the wandb-workspaces package: pip install wandb-workspaces") from error

    recipes = [r.info.get("recipe", {}) for r in runs or []]
    project = project or next((rec.get("wandb_project") for rec in recipes if rec.get("wandb_project")), None) or "pipelines"
    entity = entity or os.environ.get("WANDB_ENTITY")
    group_filter = " or ".join(f"Group = '{g}'" for g in summary["groups"]) or ""
    runset = wr.Runset(entity=entity or "", project=project, name=", ".join(summary["groups"]) or "runs",
                       filters=group_filter, groupby=["JobType"])

    history = [k for r in runs or [] for row in r.history for k in row]
    loss_keys = ["loss", *dict.fromkeys(k for k in history if EVAL_LOSS_KEY.match(k))]
    quality_keys = [k for k in dict.fromkeys(history) if QUALITY_KEY.match(k) and "macro_f1" not in k]
    panels = [
        wr.LinePlot(title=("train loss" if key == "loss" else key), x="train/global_step", y=[wandb_metric_name(key)],
                    groupby="JobType", groupby_aggfunc="mean", groupby_rangefunc="stddev")
        for key in [*loss_keys, *quality_keys]
    ]
    final_keys = [k for k in dict.fromkeys(k for r in summary["runs"] for k in r["metrics"]) if QUALITY_KEY.match(k) and "macro_f1" not in k]
    panels += [wr.BarPlot(title=key, metrics=[key], groupby="JobType", groupby_aggfunc="mean", groupby_rangefunc="stddev")
               for key in final_keys]
    report_kwargs = {"entity": entity} if entity else {}
    report = wr.Report(project=project, title=summary["title"][:128],
                       description=f"Baseline {summary['baseline']}; generated by scripts/compare.py", **report_kwargs)
    report.blocks = [
        wr.H1(summary["title"][:128]),
        wr.PanelGrid(runsets=[runset], panels=panels),
        # The local report's tables; its image links point at local files, so they are left out.
        wr.MarkdownBlock(text="\n".join(line for line in markdown.splitlines() if not line.startswith("!["))),
    ]
    try:
        report.save()
    except Exception as error:
        raise ReportError(f"Creating the W&B Report failed: {type(error).__name__}: {error}; the local report is complete.") from error
    return report.url


# --------------------------------------------------------------------------------------------------------------
# 9. Command line (scripts/compare.py)
# --------------------------------------------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="compare.py",
        description="Compare finished runs: metrics over seeds, paired statistics, plots, examples. "
        "Writes report.md, report.html, summary.json and PNGs to --output-dir.",
    )
    parser.add_argument("runs", nargs="*", metavar="RUN",
                        help="A run output folder, an offline W&B run folder (<output_dir>/wandb/offline-run-*), "
                        "or ARM=PATH to put the run in the arm ARM. Runs without ARM= are grouped by job type, model "
                        "and the recipe keys that differ between them.")
    parser.add_argument("--wandb-run", action="append", default=[], metavar="[ARM=]ENTITY/PROJECT/RUN_ID",
                        help="An online W&B run (needs credentials); repeatable.")
    parser.add_argument("--output-dir", default="outputs/reports/comparison", help="Report folder (default: %(default)s).")
    parser.add_argument("--title", help="Report title (default: from the runs' W&B group).")
    parser.add_argument("--baseline", help="Arm the others are compared with (default: the first arm).")
    parser.add_argument("--examples", type=int, default=10, help="Examples listed per direction (default: %(default)s).")
    parser.add_argument("--bootstrap-resamples", type=int, default=2000, help="Bootstrap resamples (default: %(default)s).")
    parser.add_argument("--wandb-report", action="store_true",
                        help="Also create a W&B Report (needs credentials and `pip install wandb-workspaces`).")
    parser.add_argument("--wandb-project", help="Project of the W&B Report (default: the runs' wandb_project).")
    parser.add_argument("--wandb-entity", help="Entity of the W&B Report (default: WANDB_ENTITY or your default entity).")
    args = parser.parse_args(argv)
    if not args.runs and not args.wandb_run:
        parser.error("give at least one RUN folder or --wandb-run")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(format="%(levelname)s %(message)s", level=logging.INFO)
    logger.setLevel(logging.INFO)
    args = parse_args(sys.argv[1:] if argv is None else argv)
    sources = [parse_source(s) for s in args.runs]
    for text in args.wandb_run:
        arm, path = parse_source(text)
        sources.append((arm, "wandb:" + path))
    # A ReportError reaches scripts/compare.py's cli.run: `error: <message>`, exit status 2.
    summary = build_report(sources, args.output_dir, title=args.title, baseline=args.baseline,
                           max_examples=args.examples, n_resamples=args.bootstrap_resamples)
    print(f"Report: {Path(args.output_dir) / 'report.html'} (and report.md, summary.json)")
    if args.wandb_report:
        return publish_wandb_report(summary, args.output_dir, sources, args.wandb_project, args.wandb_entity)
    return 0


def publish_wandb_report(summary: dict, output_dir, sources, project=None, entity=None) -> int:
    """Create the W&B Report after the local one; a failure is reported and returns 1, the local report stays."""
    try:
        runs = [read_run(location) for _, location in sources]
        url = create_wandb_report(summary, (Path(output_dir) / "report.md").read_text(encoding="utf-8"), runs, project, entity)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"W&B Report: {url}")
    return 0
