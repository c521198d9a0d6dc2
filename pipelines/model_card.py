"""The model card (README.md) of a finished run, from the template in model_cards/ and the files the run left.

    card = build_model_card("outputs/mnli/minilm_cpu", repo_id="me/minilm-mnli", image_dir=staging_folder)
    card.save(staging_folder / "README.md")

What it reads from the run folder: run_info.json (task, model, parameters, hardware, versions), all_results.json
(the metrics), recipe.yaml (hyperparameters), training_args.json when present (the values the recipe left at
their defaults), log_history.json (the training curve, drawn into `image_dir`), config.json (the architecture),
wandb/ (the W&B run). Optionally a baseline run folder, for the comparison table.

The metadata block is built with `huggingface_hub.ModelCardData`: license, base_model (pretrained runs only),
datasets, language, tags, library_name, pipeline_tag and the model-index results: for MNLI two results (matched
and mismatched accuracy), for QA exact match and F1 (KorQuAD's F1 is character-level, and the card says so).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from pipelines.model_card_text import (
    ModelCardError,
    architecture_rows,
    base_model_hub_id,
    baseline_comparison,
    data_text,
    draw_training_curve,
    eval_subset_note,
    format_metric,
    hardware_text,
    hyperparameter_rows,
    intended_use,
    limitations,
    lora_description,
    origin_and_summary,
    teacher_text,
    wall_time_text,
    wandb_text,
)
from pipelines.run_folder import RunFolder
from pipelines.task_definitions.base import Task

__all__ = ["CURVE_IMAGE", "DEFAULT_LICENSE", "ModelCardError", "build_model_card", "write_model_card"]

TEMPLATE = Path(__file__).resolve().parent.parent / "model_cards" / "model_card.md.jinja"
CURVE_IMAGE = "training_curve.png"
DEFAULT_LICENSE = "apache-2.0"


def eval_results(run: RunFolder, task: Task) -> list[EvalResult]:
    dataset_name = task.dataset_name + (" (articles held out of training)" if run.heldout else "")
    results = []
    for metric in task.metrics:
        if metric.key not in run.results:
            raise ModelCardError(f"{run.folder / 'all_results.json'} has no '{metric.key}': was the run evaluated?")
        results.append(
            EvalResult(
                task_type=task.hub_task_type,
                task_name=task.description,
                dataset_type=task.dataset_id,
                dataset_name=dataset_name,
                dataset_config=task.dataset_config,
                dataset_split=metric.split,
                metric_type=metric.metric_type,
                metric_name=metric.name,
                metric_value=run.results[metric.key],
            )
        )
    return results


# --- The card -------------------------------------------------------------------------------------------------


def build_model_card(
    output_dir: str | Path,
    repo_id: str | None = None,
    baseline_run: str | Path | None = None,
    image_dir: str | Path | None = None,
    license: str = DEFAULT_LICENSE,
) -> ModelCard:
    """The model card of the run in `output_dir`; the training-curve image is drawn into `image_dir` (default:
    output_dir). Nothing else is written. Raises RunFolderError when a file is missing, ModelCardError when the card
    does not parse."""
    run = RunFolder.read(output_dir)
    task = run.task
    example = ", ".join(json.dumps(text, ensure_ascii=False) for text in task.example)  # Python literals
    max_length = min(run.config.get("max_position_embeddings", 512), 384)
    image_dir = Path(image_dir) if image_dir is not None else run.folder
    model_name = (repo_id or run.folder.name).split("/")[-1]
    base_model = base_model_hub_id(run.info.get("model")) if run.info.get("pretrained") else None
    custom_code = run.custom_code
    lora = lora_description(run)

    card_data = card_metadata(run, task, model_name, license, base_model, custom_code, lora)
    origin, summary = origin_and_summary(run, task, base_model)
    origin += teacher_text(run)

    results = [
        {"split": m.split, "metric_name": m.name, "display": format_metric(run.results[m.key], m)} for m in task.metrics
    ]
    environment = run.info.get("environment", {})
    context = {
        "card_data": card_data.to_yaml(),
        "task": task,
        "model_name": model_name,
        "summary": summary,
        "results": results,
        "eval_subset_note": eval_subset_note(run, task),
        "baseline": baseline_comparison(run, RunFolder.read(baseline_run), task) if baseline_run else None,
        "origin": origin,
        "architecture": architecture_rows(run),
        "lora": lora,
        "data_description": data_text(run, task),
        "hyperparameters": hyperparameter_rows(run),
        "hardware": hardware_text(run.info),
        "wall_time": wall_time_text(run.results),
        "curve_image": CURVE_IMAGE if draw_training_curve(run.history, image_dir / CURVE_IMAGE) else None,
        "wandb": wandb_text(run),
        "software": ", ".join(
            f"{k} {environment[k]}" for k in ("transformers", "torch", "datasets", "accelerate") if environment.get(k)
        ),
        "git_commit": environment.get("git_commit"),
        "repo_id": repo_id or "path/to/this/folder",
        "auto_class": task.auto_class,
        "custom_code": bool(custom_code),
        "code_files": "`, `".join(custom_code),
        "model_type": run.config.get("model_type"),
        "architecture_class": (run.config.get("architectures") or ["?"])[0],
        # The code sample after the model is loaded, and what the pipeline returns: the task's kind says.
        "usage_code": task.behaviour.usage_code(example, max_length),
        "pipeline_task": task.pipeline_task,
        "pipeline_output": task.behaviour.pipeline_output(task),
        "intended_use": intended_use(run, task),
        "limitations": limitations(run, task),
        "licence_text": f"The model is released under {license}. {task.licence_note}"
        + (
            f" The base model [{base_model}](https://huggingface.co/{base_model}) has its own licence."
            if base_model
            else ""
        ),
    }
    card = ModelCard(render_template(context))
    check_card(card, expected_results=len(task.metrics))
    return card


def render_template(context: dict) -> str:
    """model_cards/model_card.md.jinja with the card's values (a missing value is an error, not an empty string)."""
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return environment.from_string(TEMPLATE.read_text(encoding="utf-8")).render(**context)


def card_metadata(
    run: RunFolder, task: Task, model_name: str, license: str, base_model: str | None, custom_code: list[str], lora
) -> ModelCardData:
    """The card's YAML block: licence, base model, data set, language, tags, pipeline tag, model-index results."""
    tags = [*task.tags, task.hub_task_type, run.config.get("model_type", "")]
    tags += ["trained-from-scratch"] if not run.info.get("pretrained") else ["fine-tuned"]
    tags += ["custom_code"] if custom_code else []
    tags += ["lora", "peft"] if lora else []
    return ModelCardData(
        model_name=model_name,
        license=license,
        base_model=base_model,
        datasets=[task.dataset_id],
        language=[task.language],
        tags=[t for t in tags if t],
        library_name="transformers",
        pipeline_tag=task.hub_task_type,
        metrics=sorted({m.metric_type for m in task.metrics}),
        eval_results=eval_results(run, task),
    )


def check_card(card: ModelCard, expected_results: int) -> None:
    """The card's text parses back into the same metadata, with the expected model-index results."""
    try:
        parsed = ModelCard(str(card))
    except Exception as error:  # yaml or metadata errors, whatever their type
        raise ModelCardError(f"The model card's metadata does not parse: {type(error).__name__}: {error}") from error
    found = len(parsed.data.eval_results or [])
    if found != expected_results:
        raise ModelCardError(f"The model card has {found} model-index results, expected {expected_results}")
    for field_name in ("license", "library_name", "pipeline_tag", "datasets", "language"):
        if not getattr(parsed.data, field_name, None):
            raise ModelCardError(f"The model card's metadata lacks '{field_name}'")


def write_model_card(output_dir: str | Path, **options: Any) -> Path:
    """README.md and training_curve.png in the run folder itself (for a card next to the run's files)."""
    card = build_model_card(output_dir, image_dir=output_dir, **options)
    path = Path(output_dir) / "README.md"
    card.save(path)
    return path
