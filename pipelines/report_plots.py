"""The report's plots (matplotlib, Agg backend: no display needed): loss and quality curves over steps, one line
per run, and the final metrics of each arm with error bars.
"""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path

from pipelines.report_runs import EVAL_LOSS_KEY, QUALITY_KEY, Run

LINE_STYLES = ["-", "--", ":", "-."]


def draw_plots(
    arms: dict[str, list[Run]], metrics: dict[str, dict], output_dir: Path, notes: list[str]
) -> list[tuple[str, str]]:
    """The report's PNGs in output_dir: (file name, caption) of each one drawn; what could not be drawn goes to
    notes."""
    plots = []
    loss_keys = ["loss", *history_keys(arms, EVAL_LOSS_KEY)]
    if plot_curves(arms, loss_keys, output_dir / "loss_curves.png", "Training and evaluation loss"):
        plots.append(
            (
                "loss_curves.png",
                "Training loss and evaluation loss over steps (one colour per arm, one line style per seed)",
            )
        )
    if plot_curves(
        arms, history_keys(arms, QUALITY_KEY), output_dir / "eval_metrics.png", "Evaluation during training"
    ):
        plots.append(("eval_metrics.png", "Evaluation metrics over steps"))
    else:
        notes.append("No evaluation during training in these runs (eval_strategy: no), so no metric curves over steps.")
    if plot_final_metrics(arms, metrics, output_dir / "final_metrics.png"):
        plots.append(("final_metrics.png", "Final metrics: mean over seeds, error bars ± std, dots are seeds"))
    return plots


def history_keys(arms: dict[str, list[Run]], pattern: re.Pattern) -> list[str]:
    keys = dict.fromkeys(
        k for runs in arms.values() for r in runs for row in r.history for k in row if pattern.match(k)
    )
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
                    ax.plot(
                        steps,
                        values,
                        color=colors[arm_index % len(colors)],
                        linestyle=LINE_STYLES[seed_index % 4],
                        marker="o" if len(points) < 8 else None,
                        markersize=3,
                        label=f"{arm} (seed {run.seed})",
                    )
        ax.set_title("train loss" if key == "loss" else key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(
        handles, labels, loc="lower center", ncol=min(4, max(1, len(labels))), fontsize="small", frameon=False
    )
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

    keys = [
        k for k in dict.fromkeys(k for m in metrics.values() for k in m) if QUALITY_KEY.match(k) and "macro_f1" not in k
    ]
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
