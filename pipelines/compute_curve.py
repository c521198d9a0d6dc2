"""The compute curve of self-pretraining: downstream score against pretraining FLOPs, one curve per objective.

    points, scale = read_curve("mlm", "outputs/pretraining/x", ["outputs/studies/curve-mlm"], "eval_matched_accuracy")
    scratch, _ = read_group("scratch", ["outputs/studies/what-pretraining-buys/scratch"], "eval_matched_accuracy")
    save(draw({"mlm": points}, scratch, [], scale), "curve.png")   # scripts/plot_compute_curve.py: the command line

A point of a curve is one pretraining checkpoint (a budget) fine-tuned with several seeds: the mean over seeds with
its 95% t-interval (pipelines/stats.py). The budget of a fine-tuning run is the checkpoint its model_name_or_path
points at (<pretraining run>/checkpoint-<step>, or the pretraining run's folder itself for its last step; a
word-vector run, pipelines/word_vectors.py, is one budget of its own, so its curve is several runs). Scratch
(fine-tuned from random weights) has no pretraining FLOPs, so it cannot sit on the log axis: it is a horizontal band
(mean and 95% interval over its seeds); a pretrained reference model (MiniLM) is a dashed line at its mean.

The metric's name and scale come from the runs' task (pipelines/tasks): accuracy is stored as a fraction and shown
as a percentage, SQuAD's EM/F1 are stored on their 0-100 scale and shown as they are.

Pretraining FLOPs are counted as the usual 6 x parameters x tokens for the encoder body (every token of a packed
block passes through it) plus 6 x hidden x vocabulary for the output projection of each masked token (the MLM head
scores only masked positions). Embedding lookups are free. Blocks are packed, so tokens = steps x batch x length.
Word vectors count their own (word_vectors.json: 6 x width x (1 + negatives) per pair).
"""

from __future__ import annotations

import json
import math
import re
import textwrap
from dataclasses import dataclass, field, replace
from pathlib import Path

from pipelines import checkpoints, word_vectors
from pipelines.hub import run_caveat
from pipelines.run_folder import RunFolder, RunFolderError, read_json
from pipelines.stats import MeanCI, mean_ci

# The pretraining's held-out metric at a checkpoint, first found wins: it shows a budget whose pretraining did not
# learn. ELECTRA: the recall of replaced tokens (0 when the discriminator calls every token original, where its
# accuracy only repeats the share of original tokens, 0.85); MLM: the held-out loss.
GATE_METRICS = ("eval_rtd_recall", "eval_loss")  # word vectors: their held-out skip-gram loss (heldout_loss)
MARKERS = "osD^v<>p"


class CurveError(RunFolderError):
    """Run folders that do not make a compute curve; the message names the folder."""


@dataclass(frozen=True)
class MetricScale:
    key: str  # in all_results.json
    label: str  # the axis label with its unit, e.g. "MNLI matched accuracy (%)"
    factor: float  # 100 for a fraction shown as a percentage, 1 for a score shown as stored


@dataclass
class Point:
    """Fine-tuning runs that differ only in their seed: one budget of a curve, the scratch arm, or a reference."""

    name: str  # the curve's objective, "scratch", or the reference's name
    runs: list[Path]
    values: list[float]  # the metric of each run, on the plotted scale
    step: int | None = None  # the pretraining step of the checkpoint the runs started from
    flops: float | None = None
    gate: tuple[str, float] | None = None  # (GATE_METRICS key, value) of the pretraining run at that step
    caveats: list[str] = field(default_factory=list)  # what must be said about the starting model (MiniLM)

    @property
    def interval(self) -> MeanCI:
        return mean_ci(self.values)


def read_pretraining(run_dir: str | Path) -> RunFolder:
    """The pretraining run behind a curve. A finished run keeps its config and log history at its top; a run that
    was stopped before its last step (or is still going) has them only in its checkpoints, so they come from its
    newest one. Either way the history gains the entries its checkpoints have at steps it lacks: a checkpoint of a
    rerun of the same schedule, moved in to add an earlier budget, brings its held-out gate along."""
    run_dir = Path(run_dir)
    if (run_dir / "all_results.json").is_file():
        run = RunFolder.read(run_dir)
    elif (newest := checkpoints.newest_checkpoint(run_dir)) is not None:
        info = read_json(run_dir / "run_info.json")
        run = replace(RunFolder.read(newest, finished=False), folder=run_dir, info=info, recipe=info.get("recipe", {}))
    else:
        raise CurveError(
            f"{run_dir}: not a pretraining run's folder: it has neither all_results.json (a finished run) nor a "
            "complete checkpoint-<step> folder (a stopped one)"
        )
    run.history = with_checkpoint_history(run_dir, run.history)
    return run


def with_checkpoint_history(run_dir: Path, history: list[dict]) -> list[dict]:
    """`history` plus the log entries of run_dir's complete checkpoints at steps `history` has none of."""
    known_steps = {entry.get("step") for entry in history}
    merged, seen = list(history), set()
    for folder in sorted(run_dir.glob("checkpoint-*")):
        if not checkpoints.complete_checkpoint(folder):
            continue
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        for entry in state.get("log_history", []):
            identity = json.dumps(entry, sort_keys=True)  # each checkpoint repeats the entries of the ones before it
            if entry.get("step") not in known_steps and identity not in seen:
                seen.add(identity)
                merged.append(entry)
    return sorted(merged, key=lambda entry: entry.get("step", 0))


def pretraining_flops_per_step(run_dir: Path) -> float:
    """FLOPs of one optimizer step of the pretraining run in `run_dir`, from its run_info.json and config."""
    return flops_per_step(read_pretraining(run_dir))


def flops_per_step(run: RunFolder) -> float:
    """FLOPs of one optimizer step of a pretraining run already read (read_pretraining)."""
    recipe = run.info["recipe"]
    accumulation = recipe.get("gradient_accumulation_steps", 1)
    batch = recipe["per_device_train_batch_size"] * accumulation * run.info.get("world_size", 1)
    tokens = batch * recipe.get("max_seq_length", 128)
    body = run.info["parameters"]["non_embedding"]
    masked = recipe.get("mlm_probability", 0.15) * tokens
    return 6 * body * tokens + 6 * run.config["hidden_size"] * run.config["vocab_size"] * masked


def find_runs(folder: str | Path) -> list[Path]:
    """The finished runs in `folder`: the folder itself when it is a run, else its seed<k>/ folders (a study's arm),
    else its <arm>/seed<k>/ folders (a study, pipelines/study.py). Unfinished jobs (no all_results.json) are left
    out."""
    folder = Path(folder)
    if (folder / "all_results.json").is_file():
        return [folder]
    if not folder.is_dir():
        raise CurveError(f"{folder}: no such folder")
    found = sorted(folder.glob("seed*/all_results.json")) or sorted(folder.glob("*/seed*/all_results.json"))
    if not found:
        raise CurveError(f"{folder}: no finished run in it (all_results.json in it, in seed<k>/ or in <arm>/seed<k>/)")
    return [path.parent for path in found]


def metric_scale(run: RunFolder, key: str) -> MetricScale:
    """The metric's label and scale as the run's task describes it; a metric the task does not list is shown as
    stored, named by its key."""
    task = run.task
    metric = next((m for m in task.metrics if m.key == key), None)
    if metric is None:
        return MetricScale(key, key, 1.0)
    name = metric.name[0].lower() + metric.name[1:] if metric.name[1:2].islower() else metric.name
    if metric.percent_scale:  # stored on the scale it is read on (SQuAD F1 0-100)
        return MetricScale(key, f"{task.title} {name}", 1.0)
    return MetricScale(key, f"{task.title} {name} (%)", 100.0)


def read_values(runs: list[Path], key: str) -> tuple[list[float], MetricScale, list[str]]:
    """The metric of each run on the plotted scale, the scale (the same for all runs), and the runs' caveats."""
    values, scales, caveats = [], set(), []
    for path in runs:
        run = RunFolder.read(path)
        if key not in run.results:
            raise CurveError(f"{path}/all_results.json has no '{key}' (it has {', '.join(sorted(run.results))})")
        scale = metric_scale(run, key)
        scales.add(scale)
        values.append(float(run.results[key]) * scale.factor)
        caveat = run_caveat(run.info)
        if caveat and caveat not in caveats:
            caveats.append(caveat)
    if len(scales) > 1:
        raise CurveError(f"runs of different tasks for one metric: {', '.join(sorted(s.label for s in scales))}")
    return values, scales.pop(), caveats


def read_group(name: str, folders: list[str | Path], key: str) -> tuple[Point, MetricScale]:
    """All finished runs under `folders` as one point (the scratch arm, a reference model): its seeds."""
    runs = unique_runs(folders)
    values, scale, caveats = read_values(runs, key)
    return Point(name, runs, values, caveats=caveats), scale


def read_curve(
    name: str, pretraining_dirs: str | Path | list[str | Path], folders: list[str | Path], key: str
) -> tuple[list[Point], MetricScale]:
    """The points of one objective's curve: the finished runs under `folders`, grouped by the pretraining checkpoint
    they started from (one of `pretraining_dirs`' budgets, pretraining_budgets), sorted by FLOPs."""
    if isinstance(pretraining_dirs, (str, Path)):
        pretraining_dirs = [pretraining_dirs]
    budgets = {}
    for run_dir in pretraining_dirs:
        budgets.update(pretraining_budgets(run_dir))
    by_budget: dict[Budget, list[Path]] = {}  # a run's last checkpoint and its own folder are one budget
    for run in unique_runs(folders):
        by_budget.setdefault(budgets[starting_checkpoint(run, budgets, pretraining_dirs)], []).append(run)
    points, scales = [], set()
    for budget, runs in by_budget.items():
        values, scale, caveats = read_values(runs, key)
        scales.add(scale)
        points.append(Point(name, runs, values, budget.step, budget.flops, budget.gate, caveats))
    if len(scales) > 1:
        raise CurveError(f"curve '{name}': runs of different tasks: {', '.join(sorted(s.label for s in scales))}")
    return sorted(points, key=lambda point: point.flops), scales.pop()


@dataclass(frozen=True)
class Budget:
    """One checkpoint a fine-tuning run can start from: its step, its pretraining FLOPs, the held-out gate there."""

    step: int
    flops: float
    gate: tuple[str, float] | None


def pretraining_budgets(run_dir: str | Path) -> dict[Path, Budget]:
    """The checkpoints of one pretraining run, by resolved path. A Trainer run (MLM, ELECTRA): its
    checkpoint-<step> folders and its own folder (its last logged step). A word-vector run
    (pipelines/word_vectors.py) has one: its own folder, with the FLOPs, steps and held-out loss it recorded; a curve
    of word vectors is one run per budget, each with its own schedule."""
    run_dir = Path(run_dir)
    if (run_dir / word_vectors.INFO_FILE).is_file():
        info = read_json(run_dir / word_vectors.INFO_FILE)
        heldout = [epoch["heldout_loss"] for epoch in info["history"] if "heldout_loss" in epoch]
        gate = ("heldout_loss", float(heldout[-1])) if heldout else None
        steps = info.get("steps") or math.ceil(info["pairs_seen"] / info["arguments"]["batch_size"])
        return {run_dir.resolve(): Budget(steps, float(info["flops"]), gate)}
    pretraining = read_pretraining(run_dir)
    per_step = flops_per_step(pretraining)  # the folder is read once: a stopped run's history spans its checkpoints
    steps = {}
    for folder in run_dir.glob("checkpoint-*"):
        if match := re.fullmatch(r"checkpoint-(\d+)", folder.name):
            steps[folder.resolve()] = int(match[1])
    logged = [entry["step"] for entry in pretraining.history if "step" in entry]
    if logged:  # the run's own folder: its last step
        steps[run_dir.resolve()] = max(logged)
    return {path: Budget(step, step * per_step, gate_value(pretraining.history, step)) for path, step in steps.items()}


def starting_checkpoint(run_dir: Path, budgets: dict[Path, Budget], pretraining_dirs: list[str | Path]) -> Path:
    """The budget a fine-tuning run started from: its recipe's model_name_or_path, one of `budgets`."""
    model = RunFolder.read(run_dir).setting("model_name_or_path")
    names = " or ".join(str(folder) for folder in pretraining_dirs)
    where = f"{run_dir}: model_name_or_path {model!r} is not {names} or one of its checkpoint-<step> folders"
    if not model:
        raise CurveError(f"{where} (a run from scratch? give it with --scratch)")
    # Recipes give paths relative to the folder the study ran from (the repository root), as this command does.
    path = Path(model).resolve()
    if path not in budgets:
        if any(path == Path(folder).resolve() for folder in pretraining_dirs):
            raise CurveError(f"{model}/log_history.json has no steps: the last step of the run is unknown")
        raise CurveError(where)
    return path


def unique_runs(folders: list[str | Path]) -> list[Path]:
    runs = [run for folder in folders for run in find_runs(folder)]
    resolved = [run.resolve() for run in runs]
    for index, path in enumerate(resolved):
        if path in resolved[:index]:
            raise CurveError(f"{runs[index]}: the same run is given twice (folders overlap)")
    return runs


def gate_value(history: list[dict], step: int) -> tuple[str, float] | None:
    """The pretraining's held-out metric logged at `step` (the last one logged there), if it evaluated there."""
    for key in GATE_METRICS:
        logged = [entry[key] for entry in history if entry.get("step") == step and key in entry]
        if logged:
            return key, float(logged[-1])
    return None


def caveat_marks(points: list[Point]) -> tuple[dict[int, str], list[str]]:
    """Footnote marks ('*', '**', ...) per point (by id) for the caveats of their starting models, and the caveats."""
    caveats, marks = [], {}
    for point in points:
        for caveat in point.caveats:
            if caveat not in caveats:
                caveats.append(caveat)
        marks[id(point)] = "".join("*" * (caveats.index(caveat) + 1) for caveat in point.caveats)
    return marks, caveats


def markdown_table(
    curves: dict[str, list[Point]], scratch: Point | None, references: list[Point], scale: MetricScale
) -> str:
    """The plotted points as a markdown table, with the pretraining's held-out metric at each checkpoint."""
    rows = [(p, p.name) for points in curves.values() for p in points]
    rows += [(scratch, scratch.name)] if scratch else []
    rows += [(p, f"{p.name} (reference)") for p in references]
    marks, caveats = caveat_marks([point for point, _ in rows])
    lines = [
        f"| curve | step | pretraining FLOPs | seeds | {scale.label}: mean | 95% CI | pretraining eval there |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for point, name in rows:
        interval = point.interval
        ci = f"[{interval.low:.2f}, {interval.high:.2f}]" if interval.low is not None else "— (one seed)"
        step = f"{point.step:,}" if point.step is not None else ("0" if point is scratch else "—")
        flops = f"{point.flops:.2e}" if point.flops is not None else ("0" if point is scratch else "—")
        gate = f"{point.gate[0]} {point.gate[1]:.4g}" if point.gate else "—"
        lines.append(
            f"| {name}{marks[id(point)]} | {step} | {flops} | {interval.n} | {interval.mean:.2f} | {ci} | {gate} |"
        )
    if caveats:
        lines += [""] + [f"{'*' * (index + 1)} {caveat}" for index, caveat in enumerate(caveats)]
    return "\n".join(lines) + "\n"


def seeds_text(counts) -> str:
    counts = sorted(set(counts))
    number = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"{number} seed" + ("" if number == "1" else "s")


def draw(
    curves: dict[str, list[Point]],
    scratch: Point | None,
    references: list[Point],
    scale: MetricScale,
    title: str | None = None,
):
    """The figure (matplotlib, Agg): log FLOPs axis, a curve per objective with 95% bands and the single seeds,
    scratch as a band, references as dashed lines, the legend right of the axes and caveats below them."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.legend_handler import HandlerTuple

    figure, axis = plt.subplots(figsize=(7.5, 4.8))
    handles, labels = [], []
    shown = []  # the values the y axis must show: single seeds, scratch band, references (not the t-bands of 2 seeds)
    for index, (name, points) in enumerate(curves.items()):
        colour, marker = f"C{index}", MARKERS[index % len(MARKERS)]
        intervals = [p.interval for p in points]
        x = [p.flops for p in points]
        label = f"{name}: mean of {seeds_text(i.n for i in intervals)}, 95% CI"
        (line,) = axis.plot(x, [i.mean for i in intervals], marker=marker, color=colour, label=label)
        band = axis.fill_between(
            x,
            [i.low if i.low is not None else i.mean for i in intervals],
            [i.high if i.high is not None else i.mean for i in intervals],
            color=colour,
            alpha=0.2,
            linewidth=0,
        )
        handles.append((band, line))
        labels.append(label)
        for point in points:  # the single seeds, faint, so the spread behind each mean is visible
            axis.scatter([point.flops] * len(point.values), point.values, color=colour, marker=marker, s=12, alpha=0.35)
            shown += point.values
    if scratch is not None:
        interval = scratch.interval
        low = interval.low if interval.low is not None else interval.mean
        high = interval.high if interval.high is not None else interval.mean
        label = f"{scratch.name} (no pretraining, 0 FLOPs): mean of {seeds_text([interval.n])}, 95% CI"
        line = axis.axhline(interval.mean, color="0.35", linewidth=1)
        band = axis.axhspan(low, high, color="0.5", alpha=0.25, linewidth=0, label=label)
        handles.append((band, line))
        labels.append(label)
        shown += [low, high]
    marks, caveats = caveat_marks(references)
    for index, reference in enumerate(references):
        label = (
            f"{reference.name} (pretrained reference{marks[id(reference)]}): "
            f"mean of {seeds_text([reference.interval.n])}"
        )
        handles.append(
            axis.axhline(
                reference.interval.mean,
                color="black",
                linestyle=("--", ":", "-.")[index % 3],
                linewidth=1.2,
                label=label,
            )
        )
        labels.append(label)
        shown.append(reference.interval.mean)

    axis.set_xscale("log")
    budgets = [p.flops for points in curves.values() for p in points]
    if budgets:
        axis.set_xlim(min(budgets) / 2, max(budgets) * 2)  # a margin of a factor 2 either side, on the log axis
    # Everything measured plus a fifth of its range, so seed noise is seen next to what pretraining changes.
    bottom, top = min(shown), max(shown)
    margin = 0.2 * (top - bottom) or 1.0
    axis.set_ylim(bottom - margin, top + margin)
    axis.set_xlabel("pretraining compute (FLOPs, log scale)")
    axis.set_ylabel(scale.label)
    axis.set_title(title or f"{scale.label} after fine-tuning, by pretraining compute", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(
        handles,
        labels,
        handler_map={tuple: HandlerTuple(ndivide=1)},
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        fontsize=8,
        frameon=False,
    )
    notes = [
        "Each point: one pretraining checkpoint fine-tuned with several seeds (small markers), their mean and "
        "95% t-interval (shading)."
    ]
    notes += ["*" * (index + 1) + " " + caveat for index, caveat in enumerate(caveats)]
    caption = "\n".join(textwrap.fill(note, 110) for note in notes)
    axis.text(0.0, -0.16, caption, transform=axis.transAxes, va="top", ha="left", fontsize=7)
    return figure


def save(figure, output: str | Path) -> None:
    """Write the figure with the legend and caption outside the axes included (bbox_inches='tight')."""
    import matplotlib.pyplot as plt

    figure.savefig(output, dpi=120, bbox_inches="tight")
    plt.close(figure)
