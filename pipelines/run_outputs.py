"""The files every run leaves in its output folder, written whole or not at all: recipe.yaml and run_info.json at
the start (with W&B set up), all_results.json and log_history.json at the end (with W&B's summary and finish).
Tasks write their predictions with write_jsonl.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

from pipelines import interruptions, tracking
from pipelines.checkpoints import newest_checkpoint
from pipelines.model_loading import count_parameters

logger = logging.getLogger("pipelines")


def write_json(path: str | Path, value: Any) -> None:
    """Write to a temporary file and rename it, so a reader never sees half a file."""
    write_text(path, json.dumps(value, indent=2, default=str) + "\n")


def write_jsonl(path: str | Path, rows) -> None:
    write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def write_text(path: str | Path, text: str) -> None:
    """Write a file of the run whole or not at all (a temporary file, then a rename). A failure (full disk, a
    folder that cannot be written) is SaveFailedError: one line naming the file and what is still intact."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        last = newest_checkpoint(path.parent)
        raise interruptions.write_failed(error, path, path.parent, last, atomic=True) from error


def run_info(
    task: str, model_args, tracking_args, training_args, recipe: dict, model, extra: dict | None = None
) -> dict:
    """What a comparison needs to know about a run; saved as run_info.json and put in the W&B config."""
    info = {
        "task": task,
        "model": model_args.model_name_or_path or f"scratch:{model_args.scratch_preset}",
        "pretrained": model_args.scratch_preset is None,
        "model_type": model.config.model_type,
        "job_type": tracking_args.wandb_job_type if tracking_args else None,
        "group": tracking_args.wandb_group if tracking_args else None,
        "seed": training_args.seed,
        "parameters": count_parameters(model),
        "recipe": recipe,
        "environment": tracking.environment_info(),
        "world_size": training_args.world_size,
        "mixed_precision": (
            "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else training_args.mixed_precision
        ),
    }
    choice = getattr(training_args, "precision_choice", None)  # set by pipelines.precision.apply in TaskRun.run
    if choice is not None:
        info["precision"] = choice.record()
    info.update(extra or {})
    return info


# hub_token, wandb_api_key, ...; not tokenizer_name.
SECRET_KEY = re.compile(r"(^|_)(token|api_key|password|secret)$", re.IGNORECASE)


def redact(values: dict) -> dict:
    """Recipe values safe to save and log: anything named like a token or key is replaced."""
    return {k: ("<redacted>" if SECRET_KEY.search(k) and v not in (None, "", False) else v) for k, v in values.items()}


def redact_argv() -> None:
    """Blank token values in sys.argv, which W&B records as the run's command line."""
    for i, arg in enumerate(sys.argv):
        if arg.startswith("--") and SECRET_KEY.search(arg[2:].split("=", 1)[0]):
            if "=" in arg:
                sys.argv[i] = arg.split("=", 1)[0] + "=<redacted>"
            elif i + 1 < len(sys.argv):
                sys.argv[i + 1] = "<redacted>"


def start_outputs(
    task: str, model_args, tracking_args, training_args, recipe: dict, model, extra: dict | None = None
) -> dict:
    """Called once inputs, tokenizer and model have loaded, so a bad input leaves no output folder behind:
    sets up W&B, writes recipe.yaml and run_info.json (main process), and returns the run info."""
    recipe = redact(recipe)
    redact_argv()
    tracking.setup_wandb(tracking_args, training_args)
    info = run_info(task, model_args, tracking_args, training_args, recipe, model, extra)
    if training_args.process_index == 0:
        recipe_text = yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True)
        write_text(Path(training_args.output_dir) / "recipe.yaml", recipe_text)
        write_json(Path(training_args.output_dir) / "run_info.json", info)
        params = info["parameters"]
        logger.info(
            "Model %s: %s parameters (%s trainable)", info["model"], f"{params['total']:,}", f"{params['trainable']:,}"
        )
    return info


def record_wandb_run(output_dir: Path) -> None:
    """Add the W&B run's id, project and (online) URL to run_info.json, for model cards and reports."""
    try:
        import wandb
    except ImportError:
        return
    run = wandb.run
    path = output_dir / "run_info.json"
    if run is None or not path.exists():
        return
    info = json.loads(path.read_text())
    info["wandb"] = {
        "id": run.id,
        "project": run.project,
        "entity": getattr(run, "entity", None),
        "offline": bool(getattr(run, "offline", False) or os.environ.get("WANDB_MODE") == "offline"),
    }
    if not info["wandb"]["offline"]:
        info["wandb"]["url"] = run.url
    write_json(path, info)


def peak_memory_mb() -> float:
    """Peak GPU memory allocated, or on CPU the peak resident memory of this process, in MB."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is in KB on Linux


def finish_run(trainer, all_results: dict, tables: dict | None = None) -> None:
    """Write all_results.json and log_history.json, put final metrics and tables in W&B, close the W&B run."""
    all_results.setdefault("peak_memory_mb", peak_memory_mb())
    try:
        _finish_run_on_main_process(trainer, all_results, tables)
    finally:
        # A distributed launch (also `accelerate launch` of a MULTI_GPU config with one process) starts a process
        # group; torch warns about leaked resources when it is not destroyed before exit. accelerate destroys it.
        trainer.accelerator.wait_for_everyone()
        trainer.accelerator.end_training()


def _finish_run_on_main_process(trainer, all_results: dict, tables: dict | None) -> None:
    if not trainer.is_world_process_zero():
        return
    output_dir = Path(trainer.args.output_dir)
    record_wandb_run(output_dir)
    write_json(output_dir / "all_results.json", all_results)
    write_json(output_dir / "log_history.json", trainer.state.log_history)
    if tracking.wandb_enabled(trainer.args):
        scalars = {k: v for k, v in all_results.items() if isinstance(v, (int, float))}
        nested = {k: v for k, v in all_results.items() if isinstance(v, dict)}
        for key, values in nested.items():
            scalars.update({f"{key}/{name}": v for name, v in values.items() if isinstance(v, (int, float))})
        try:
            tracking.log_wandb_summary(scalars, tables)
            tracking.finish_wandb()
        except Exception as error:  # W&B must never cost the run its results, which are already on disk
            logger.warning(
                "W&B failed at the end of the run (%s: %s); results are in %s", type(error).__name__, error, output_dir
            )
