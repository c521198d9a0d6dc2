"""The compute curve of self-pretraining: downstream quality against pretraining steps and FLOPs.

    python scripts/plot_compute_curve.py outputs/pretraining/en_trainside_small_3l_4h_cpu \
        0=outputs/studies/mnli-pretraining-curve-cpu/step0/seed42 150=.../step150/seed42 ... \
        --metric eval_matched_accuracy --output RESULTS_compute_curve.png

The same works for QA runs with --metric eval_f1 --metric eval_exact_match (0-100 scores, plotted as they are).

Each point is a fine-tuning run (its all_results.json) labelled with the pretraining step of the checkpoint it
started from; step 0 is the same model fine-tuned from random weights (the scratch arm).

Pretraining FLOPs are counted as the usual 6 x parameters x tokens for the encoder body (every token of a packed
block passes through it) plus 6 x hidden x vocabulary for the output projection of each masked token (the MLM head
scores only masked positions). Embedding lookups are free. Blocks are packed, so tokens = steps x batch x length.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.run_folder import RunFolder


def pretraining_flops_per_step(run_dir: Path) -> float:
    """FLOPs of one optimizer step of the pretraining run in `run_dir`, from its run_info.json and config."""
    run = RunFolder.read(run_dir)
    recipe = run.info["recipe"]
    batch = recipe["per_device_train_batch_size"] * recipe.get("gradient_accumulation_steps", 1) * run.info.get("world_size", 1)
    tokens = batch * recipe.get("max_seq_length", 128)
    body = run.info["parameters"]["non_embedding"]
    masked = recipe.get("mlm_probability", 0.15) * tokens
    return 6 * body * tokens + 6 * run.config["hidden_size"] * run.config["vocab_size"] * masked


def read_points(pretraining_dir: Path, labelled_runs: list[str], metric: str) -> list[dict]:
    """[{"step", "flops", "value", "percent", "run"}] sorted by step; labelled_runs are 'STEP=run_dir' strings."""
    per_step = pretraining_flops_per_step(pretraining_dir)
    points = []
    for item in labelled_runs:
        step, _, run = item.partition("=")
        folder = RunFolder.read(run)
        if metric not in folder.results:
            raise KeyError(f"{run}/all_results.json has no '{metric}' (it has {', '.join(sorted(folder.results))})")
        value = float(folder.results[metric])
        # QA scores (exact_match, f1) are stored on a 0-100 scale, classification scores as fractions.
        points.append({"step": int(step), "flops": int(step) * per_step, "value": value,
                       "percent": value if folder.task.is_qa else 100 * value, "run": run})
    return sorted(points, key=lambda p: p["step"])


def plot(points_by_metric: dict[str, list[dict]], output: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_step, by_flops) = plt.subplots(1, 2, figsize=(11, 4.2))
    for metric, points in points_by_metric.items():
        steps = [p["step"] for p in points]
        values = [p["percent"] for p in points]
        by_step.plot(steps, values, marker="o", label=metric)
        # Step 0 has no pretraining FLOPs: it sits at the left edge of a linear axis.
        by_flops.plot([p["flops"] / 1e15 for p in points], values, marker="o", label=metric)
    by_step.set_xlabel("pretraining steps")
    by_flops.set_xlabel("pretraining compute (PFLOP)")
    for axis in (by_step, by_flops):
        axis.set_ylabel("dev score (%)")
        axis.grid(alpha=0.3)
        axis.legend(loc="lower right", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    plt.close(fig)
