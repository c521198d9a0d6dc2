"""Training glue shared by every task: run setup, tokenizer and model loading (pretrained or from scratch),
the Trainer, and the files every run leaves in its output folder.

A task module (pipelines/tasks/*.py) loads and preprocesses its data and computes its metrics; it calls the
functions here for everything else, so all tasks save, log and resume the same way.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
import yaml
from transformers import AutoConfig, AutoTokenizer, set_seed

from pipelines import tracking
from pipelines.arguments import RecipeError, parse_overrides
from pipelines.hub import load_pretrained, resolve_model_path

logger = logging.getLogger("pipelines")


def setup_run(training_args, tracking_args=None) -> None:
    """Logging on every process (quiet on non-main ones), seeds, and W&B environment, before anything is loaded."""
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", handlers=[logging.StreamHandler(sys.stdout)]
    )
    level = logging.INFO if training_args.process_index == 0 else logging.WARNING
    for name in ("pipelines", __name__):
        logging.getLogger(name).setLevel(level)
    transformers.utils.logging.set_verbosity(logging.WARNING)
    datasets.utils.logging.set_verbosity(logging.WARNING)
    if training_args.run_name is None:
        training_args.run_name = Path(training_args.output_dir).name
    if tracking_args is not None:
        tracking.setup_wandb(tracking_args, training_args)
    set_seed(training_args.seed)


def resolve_resume_checkpoint(training_args) -> str | None:
    """`resume_from_checkpoint: auto` -> the newest complete checkpoint in output_dir, or None to start fresh.

    A checkpoint is complete when the Trainer has written its trainer_state.json, the last file it saves;
    a folder killed halfway through saving lacks it and is never picked.
    """
    value = training_args.resume_from_checkpoint
    if value in (None, "", "false", "False", "no"):
        return None
    if value not in ("auto", "true", "True"):
        return value
    output_dir = Path(training_args.output_dir)
    if not output_dir.is_dir():
        return None
    pattern = re.compile(r"^checkpoint-(\d+)$")
    complete = [
        p for p in output_dir.iterdir() if p.is_dir() and pattern.match(p.name) and (p / "trainer_state.json").is_file()
    ]
    if not complete:
        return None
    latest = max(complete, key=lambda p: int(pattern.match(p.name).group(1)))
    logger.info("Resuming from %s", latest)
    return str(latest)


def load_tokenizer(model_args):
    name = model_args.tokenizer_name or model_args.model_name_or_path
    return load_pretrained(
        AutoTokenizer,
        name,
        what="tokenizer",
        cache_dir=model_args.cache_dir,
        revision=model_args.model_revision,
        trust_remote_code=model_args.trust_remote_code,
    )


def load_model(model_args, auto_model_class, tokenizer, max_seq_length: int | None = None, **config_kwargs):
    """A pretrained checkpoint with a (new) task head, or a scratch preset with random weights.

    config_kwargs go into the model config (num_labels, id2label, ...). The tokenizer's vocabulary must fit the
    model's embeddings, and max_seq_length its position table: both are checked here, before any training.
    """
    overrides = parse_overrides(model_args.config_overrides)
    if model_args.attn_implementation:
        config_kwargs["attn_implementation"] = model_args.attn_implementation
    if model_args.scratch_preset is not None:
        from pipelines.models import config_from_preset

        config = config_from_preset(
            model_args.scratch_preset, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **overrides, **config_kwargs
        )
        model = auto_model_class.from_config(config)
    else:
        path = resolve_model_path(model_args.model_name_or_path)
        config = load_pretrained(
            AutoConfig, path, what="model config", cache_dir=model_args.cache_dir, revision=model_args.model_revision,
            trust_remote_code=model_args.trust_remote_code, **overrides, **config_kwargs,
        )
        model = load_pretrained(
            auto_model_class, path, config=config, cache_dir=model_args.cache_dir, revision=model_args.model_revision,
            trust_remote_code=model_args.trust_remote_code, ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
        )
    check_model_fits(model, tokenizer, max_seq_length)
    return model


def check_model_fits(model, tokenizer, max_seq_length: int | None) -> None:
    embeddings = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > embeddings:
        raise RecipeError(
            f"The tokenizer has {len(tokenizer)} tokens but the model's embeddings have {embeddings} rows: "
            "use the tokenizer the model was trained with."
        )
    positions = getattr(model.config, "max_position_embeddings", None)
    if max_seq_length is not None and positions is not None and max_seq_length > positions:
        raise RecipeError(f"max_seq_length {max_seq_length} is beyond the model's {positions} positions (max_position_embeddings).")


def count_parameters(model) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    embedding_modules = [m for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    embedding = sum(p.numel() for m in embedding_modules for p in m.parameters())
    return {"total": total, "trainable": trainable, "embedding": embedding, "non_embedding": total - embedding}


def write_json(path: str | Path, value: Any) -> None:
    """Write to a temporary file and rename it, so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_jsonl(path: str | Path, rows) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def run_info(task: str, model_args, tracking_args, training_args, recipe: dict, model, extra: dict | None = None) -> dict:
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
        "mixed_precision": "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else training_args.mixed_precision,
    }
    info.update(extra or {})
    return info


def save_recipe(output_dir: str | Path, recipe: dict) -> None:
    path = Path(output_dir) / "recipe.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True), encoding="utf-8")


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


class RunInfoCallback(transformers.TrainerCallback):
    """Puts the run's metadata (recipe, parameter counts, commit, versions, hardware) in the W&B config."""

    def __init__(self, info: dict):
        self.info = info
        self.sent = False

    def _send(self, state):
        if not self.sent and state.is_world_process_zero:
            tracking.update_wandb_config({"run_info": self.info})
            self.sent = True

    def on_train_begin(self, args, state, control, **kwargs):
        self._send(state)

    def on_log(self, args, state, control, **kwargs):
        self._send(state)


def finish_run(trainer, all_results: dict, tables: dict | None = None) -> None:
    """Write all_results.json and log_history.json, put final metrics and tables in W&B, close the W&B run."""
    if not trainer.is_world_process_zero():
        return
    output_dir = Path(trainer.args.output_dir)
    write_json(output_dir / "all_results.json", all_results)
    write_json(output_dir / "log_history.json", trainer.state.log_history)
    if tracking.wandb_enabled(trainer.args):
        scalars = {k: v for k, v in all_results.items() if isinstance(v, (int, float))}
        nested = {k: v for k, v in all_results.items() if isinstance(v, dict)}
        for key, values in nested.items():
            scalars.update({f"{key}/{name}": v for name, v in values.items() if isinstance(v, (int, float))})
        tracking.log_wandb_summary(scalars, tables)
        tracking.finish_wandb()
