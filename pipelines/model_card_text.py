"""The pieces of a run's model card, each from the run folder: results, architecture, data, training, limitations.

pipelines/model_card.py puts them into the template (model_cards/model_card.md.jinja); what is particular to a task
comes from its Task and TaskKind (pipelines/task_definitions/base.py), never from a test of its name here.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipelines import tracking
from pipelines.hub import run_caveat
from pipelines.run_folder import RunFolder, RunFolderError, read_json
from pipelines.task_definitions.base import Metric, Task

# Models shipped inside PyPI packages are recipes' short names; on the Hub they have these ids.
HUB_IDS_OF_SHORT_NAMES = {
    "minilm": "sentence-transformers/all-MiniLM-L6-v2",
    "all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2",
    "sentence-transformers/all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2",
}


HYPERPARAMETERS = (
    "learning_rate",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_train_epochs",
    "max_steps",
    "warmup_steps",
    "warmup_ratio",
    "lr_scheduler_type",
    "weight_decay",
    "optim",
    "max_seq_length",
    "doc_stride",
    "max_train_samples",
    "bf16",
    "fp16",
    "seed",
    "use_lora",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
)


class ModelCardError(RunFolderError):
    """A run folder that cannot be described (a file missing or unreadable), or a card whose metadata does not parse."""


# --- The base model --------------------------------------------------------------------------------------------


def base_model_hub_id(name: str | None) -> str | None:
    """The Hub id of a pretrained run's starting point, or None when it was a local folder (no Hub page to link)."""
    if not name:
        return None
    if name.lower() in HUB_IDS_OF_SHORT_NAMES:
        return HUB_IDS_OF_SHORT_NAMES[name.lower()]
    looks_like_hub_id = re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) is not None
    return name if looks_like_hub_id and not Path(name).exists() else None


# --- Pieces of the card ---------------------------------------------------------------------------------------


def format_metric(value: float, metric: Metric) -> str:
    return f"{value:.2f}" if metric.percent_scale else f"{100 * value:.2f}%"


def eval_subset_note(run: RunFolder, task: Task) -> str | None:
    """Says so when the run evaluated on fewer examples than the full split (max_eval_samples)."""
    if run.heldout:
        return "on articles held out of training, see below"
    counts = run.eval_counts
    partial = [
        f"{counts[s]:,} of {full:,} {s}" for s, full in task.full_eval_sizes.items() if s in counts and counts[s] < full
    ]
    return f"on a subset: {', '.join(partial)} examples" if partial else None


def architecture_rows(run: RunFolder) -> list[tuple[str, str]]:
    config, parameters = run.config, run.info.get("parameters", {})

    def first(*names):
        return next((config[n] for n in names if n in config), None)

    rows = [
        ("Architecture", f"`{(config.get('architectures') or ['?'])[0]}` (model type `{config.get('model_type')}`)"),
        ("Layers", first("num_hidden_layers", "n_layers")),
        ("Hidden size", first("hidden_size", "dim")),
        ("Attention heads", first("num_attention_heads", "n_heads")),
        ("Feed-forward size", first("intermediate_size", "hidden_dim")),
        ("LayerNorm position", config.get("norm_position")),
        ("Vocabulary", first("vocab_size")),
        ("Max positions", first("max_position_embeddings")),
        (
            "Parameters",
            f"{parameters['total']:,} ({parameters.get('non_embedding', 0):,} outside the embeddings)"
            if "total" in parameters
            else None,
        ),
    ]
    return [(name, f"{value:,}" if isinstance(value, int) else str(value)) for name, value in rows if value is not None]


def lora_description(run: RunFolder) -> dict | None:
    if not run.setting("use_lora"):
        return None
    # The adapter's own config says what training used, defaults included; the recipe is the fallback.
    adapter_dir = run.folder / "adapter"
    adapter_config = read_json(adapter_dir / "adapter_config.json", required=False) or {}
    targets = adapter_config.get("target_modules") or run.setting("lora_target_modules") or "the attention projections"
    to_save = list(dict.fromkeys(adapter_config.get("modules_to_save") or run.setting("lora_modules_to_save") or []))
    if (adapter_dir / "adapter_model.safetensors").is_file():
        # PEFT adds its generic head names ("classifier", "score") to the list; keep those the adapter really holds.
        from safetensors import safe_open

        with safe_open(str(adapter_dir / "adapter_model.safetensors"), framework="pt") as weights:
            saved = [key for key in weights.keys() if "lora_" not in key]
        to_save = [name for name in to_save if any(f".{name}." in key for key in saved)]

    def listed(value) -> str:
        return ", ".join(f"`{v}`" for v in sorted(value)) if isinstance(value, list) else str(value)

    return {
        "r": adapter_config.get("r") or run.setting("lora_r"),
        "alpha": adapter_config.get("lora_alpha") or run.setting("lora_alpha"),
        "dropout": adapter_config.get("lora_dropout", run.setting("lora_dropout")),
        "targets": listed(targets),
        "modules_to_save": listed(to_save) if to_save else "the task head",
    }


def hyperparameter_rows(run: RunFolder) -> list[tuple[str, str]]:
    rows = [(name, run.setting(name)) for name in HYPERPARAMETERS]
    uses_max_steps = (run.setting("max_steps") or -1) > 0  # then the Trainer ignores num_train_epochs
    skipped = {"num_train_epochs"} if uses_max_steps else {"max_steps"}
    rows = [(name, value) for name, value in rows if value not in (None, "", False) and name not in skipped]
    batch = run.setting("per_device_train_batch_size")
    if batch:
        effective = batch * (run.setting("gradient_accumulation_steps") or 1) * (run.info.get("world_size") or 1)
        rows.append(("effective batch size", effective))
    rows.append(("mixed precision", run.info.get("mixed_precision") or "no"))
    return [(name, ", ".join(map(str, value)) if isinstance(value, list) else str(value)) for name, value in rows]


def hardware_text(info: dict) -> str:
    env = info.get("environment", {})
    processes = info.get("world_size") or 1
    if env.get("gpu"):
        device = f"{env.get('gpu_count', 1)} x {env['gpu']}"
    else:
        device = (
            f"CPU ({env.get('cpu') or 'unknown'}, {env.get('cpu_count', '?')} cores, "
            f"{env.get('torch_threads', '?')} torch threads)"
        )
    text = f"{device}, {processes} training process{'es' if processes > 1 else ''}"
    precision = info.get("precision")  # pipelines/precision.py: the choice, its reason, the CPU capability
    if precision:
        text += (
            f"; CPU capability {precision['hardware']['cpu_capability']}; precision {precision['precision']} "
            f"({precision['source']}: {precision['reason']})"
        )
    return text


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "not recorded"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def wall_time_text(results: dict) -> str:
    train = results.get("train_runtime")
    evaluation = sum(v for k, v in results.items() if k.startswith("eval") and k.endswith("_runtime"))
    text = f"training {duration(train)}"
    if results.get("train_samples_per_second"):
        text += f" ({results['train_samples_per_second']:.1f} samples/s)"
    if evaluation:
        text += f", evaluation {duration(evaluation)}"
    return text


def wandb_text(run: RunFolder) -> str:
    """A link to the W&B run when it was online; for an offline run, where it is and how to upload it."""
    recorded = run.info.get("wandb") or {}
    url = recorded.get("url") or run.info.get("wandb_url")
    if url:
        return f"[{url}]({url})"
    offline = tracking.find_offline_runs(run.folder)
    if offline:
        run_id = offline[-1].name.rsplit("-", 1)[-1]
        project = run.recipe.get("wandb_project", "pipelines")
        return (
            f"the run was logged offline (run id `{run_id}`, project `{project}`) and not uploaded. From the run's "
            f"output folder, `wandb sync wandb/{offline[-1].name}` uploads it; it then appears at "
            f"`https://wandb.ai/<entity>/{project}/runs/{run_id}`."
        )
    online = sorted((run.folder / "wandb").glob("run-*")) if (run.folder / "wandb").is_dir() else []
    if online:
        run_id = online[-1].name.rsplit("-", 1)[-1]
        project = run.recipe.get("wandb_project", "pipelines")
        return f"run id `{run_id}` in project `{project}` (the entity was not recorded)."
    return "not logged to W&B."


def draw_training_curve(history: list[dict], path: Path) -> bool:
    """Training loss per step, and the evaluation metrics logged during training if any. False when nothing to draw."""
    losses = [(row["step"], row["loss"]) for row in history if "loss" in row and "step" in row]
    if not losses:
        return False
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    eval_keys = sorted(
        {k for row in history for k in row if k.startswith("eval_") and k.endswith(("accuracy", "f1", "exact_match"))}
    )
    figure, axes = plt.subplots(1, 2 if eval_keys else 1, figsize=(10 if eval_keys else 6, 4), squeeze=False)
    axes[0][0].plot(*zip(*losses), label="training loss")
    axes[0][0].set(xlabel="step", ylabel="loss", title="Training loss")
    for key in eval_keys:
        points = [(row["step"], row[key]) for row in history if key in row and "step" in row]
        axes[0][1].plot(*zip(*points), marker="o", label=key.removeprefix("eval_"))
    if eval_keys:
        axes[0][1].set(xlabel="step", title="Evaluation during training")
        axes[0][1].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def baseline_comparison(run: RunFolder, baseline: RunFolder, task: Task) -> dict:
    if baseline.task != run.task:
        raise ModelCardError(
            f"The baseline {baseline.folder} is a {baseline.task.name} run, this one is {run.task.name}: "
            "compare like with like."
        )
    rows = []
    for metric in task.metrics:
        this, other = run.results.get(metric.key), baseline.results.get(metric.key)
        if this is None or other is None:
            continue
        scale = 1 if metric.percent_scale else 100
        unit = "" if metric.percent_scale else " pt"
        rows.append(
            {
                "name": metric.name,
                "this": format_metric(this, metric),
                "baseline": format_metric(other, metric),
                "difference": f"{scale * (this - other):+.2f}{unit}",
            }
        )
    for name, read in (
        ("Parameters", lambda r: r.info.get("parameters", {}).get("total")),
        ("Trainable parameters", lambda r: r.info.get("parameters", {}).get("trainable")),
        ("Training time (s)", lambda r: r.results.get("train_runtime")),
        ("Training samples/s", lambda r: r.results.get("train_samples_per_second")),
    ):
        this, other = read(run), read(baseline)
        if this is not None and other is not None:
            as_text = (lambda v: f"{v:,}") if isinstance(this, int) else (lambda v: f"{v:,.1f}")
            rows.append(
                {
                    "name": name,
                    "this": as_text(this),
                    "baseline": as_text(other),
                    "difference": f"{this / other:.2f}x" if other else "-",
                }
            )
    budget_keys = ("max_steps", "num_train_epochs", "max_train_samples", "per_device_train_batch_size", "learning_rate")
    return {
        "model": baseline.info.get("model"),
        "kind": "pretrained, fine-tuned" if baseline.info.get("pretrained") else "trained from scratch",
        "run_name": baseline.folder.name,
        "same_budget": all(run.setting(k) == baseline.setting(k) for k in budget_keys),
        "rows": rows,
    }


def data_text(run: RunFolder, task: Task) -> str:
    source = run.recipe.get("data_dir") or run.recipe.get("heldout_from_file") or run.recipe.get("train_file")
    where = (
        f"local copies of {task.dataset_name}"
        if source
        else f"[{task.dataset_id}](https://huggingface.co/datasets/{task.dataset_id})"
    )
    text = f"Trained and evaluated on {where}."
    train_count = run.train_count
    if train_count:
        text += f" Training examples: {train_count:,}"
        if run.setting("max_train_samples"):
            text += " (the first examples of the training split, a subset)"
        text += "."
    counts = run.eval_counts
    if counts:
        text += " Evaluation: " + ", ".join(f"{split} ({n:,} examples)" for split, n in counts.items()) + "."
    if task.data_note:
        text += " " + task.data_note
    if run.heldout:
        fraction = run.setting("heldout_fraction")
        held_out = f"{fraction:.0%} of its articles" if isinstance(fraction, (int, float)) else "some of its articles"
        text += (
            f" There is no separate training file here: `{Path(str(run.setting('heldout_from_file'))).name}` was split "
            f"by article, {held_out} held out for evaluation and the rest used for training, so no article is in "
            "both. The split is in data_splits.json of the run folder."
        )
    return text


def limitations(run: RunFolder, task: Task) -> list[str]:
    items = []
    caveat = run_caveat(run.info)
    if caveat:
        items.append(caveat)
    teacher_caveat = (run.info.get("teacher") or {}).get("caveat")
    if teacher_caveat:
        items.append(teacher_caveat)
    if not run.info.get("pretrained", True):
        items.append(
            "Trained from scratch on one task's data, with no pretraining: expect far lower accuracy than a "
            "pretrained encoder of the same size; it is a point of comparison, not a model to deploy."
        )
    if run.setting("max_train_samples") or (run.train_count or 10**9) < 100_000:
        items.append(
            "Trained on a subset of the training data within a small compute budget (CPU recipe); the "
            "numbers are those of this budget, not of a full training run."
        )
    items.extend(task.limitations)
    items.append(
        "Inherits the biases of its training data (crowd-sourced text) and, when pretrained, of its base model."
    )
    return items


def origin_and_summary(run: RunFolder, task: Task, base_model: str | None) -> tuple[str, str]:
    """Where the weights came from, and the card's one-line summary."""
    if run.info.get("pretrained"):
        start = (
            f"[{base_model}](https://huggingface.co/{base_model})"
            if base_model
            else f"the local checkpoint `{Path(str(run.info.get('model'))).name}`"
        )
        return (
            f"Fine-tuned from {start}.",
            f"{start[0].upper() + start[1:]} fine-tuned on {task.title} ({task.description.lower()}).",
        )
    origin = (
        "Trained **from scratch**: the weights started random (preset "
        f"`{str(run.info.get('model', '')).removeprefix('scratch:')}`), with no pretraining of any kind."
    )
    return (
        origin,
        f"A `{run.config.get('model_type')}` encoder trained from scratch on {task.title} "
        f"({task.description.lower()}).",
    )


def teacher_text(run: RunFolder) -> str:
    """The teacher of a distilled run (pipelines/distillation.py), or nothing."""
    teacher = run.info.get("teacher")
    if not teacher:
        return ""
    augmented = teacher.get("augmented_examples")
    extra = f", on {augmented} more teacher-labelled examples made from train examples" if augmented else ""
    swap = teacher.get("augment_swap")
    if augmented and swap:
        extra += f" (each word swapped for one of the teacher's nearest words with probability {swap})"
    transfer = teacher.get("transfer_examples")
    if transfer:
        extra += (
            f"{', and' if augmented else ','} on the train file's next {transfer} examples after its own, labelled "
            "by the teacher only (their human labels unused)"
        )
    init = teacher.get("init_embeddings")
    if init:
        extra += (
            f". Its embeddings started from the teacher's, projected onto its width ({init.get('width')}) by their "
            "top principal directions"
        )
    relations = teacher.get("relations")
    if relations:
        extra += (
            f". Its last attention layer also learned the teacher's query, key and value relations (MiniLMv2; "
            f"{relations.get('heads')} relation heads, weight {relations.get('weight')})"
        )
    return (
        f" Distilled from the teacher `{teacher.get('path')}` (itself from `{teacher.get('model')}`): the loss mixed "
        f"the gold labels with the teacher's outputs at temperature {teacher.get('temperature')} (teacher weight "
        f"{teacher.get('alpha')}){extra}."
    )


def intended_use(run: RunFolder, task: Task) -> str:
    return task.intended_use + (
        " Above all it is a research artefact of a study comparing pretrained and from-scratch encoders "
        "under the same budget; it is not meant for decisions about people."
    )
