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
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
import yaml
from transformers import AutoConfig, AutoTokenizer, set_seed
from transformers.integrations import WandbCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

import pipelines.models  # noqa: F401  registers our model classes with the Auto classes
from pipelines import interruptions, tracking
from pipelines.arguments import RecipeError, parse_overrides
from pipelines.hub import load_pretrained, resolve_model_path

logger = logging.getLogger("pipelines")


def setup_run(training_args) -> None:
    """Logging on every process (quiet on non-main ones) and seeds, before anything is loaded."""
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
    set_seed(training_args.seed)


def _complete_checkpoint(folder: Path) -> bool:
    try:
        state = json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return state.get("global_step") == int(folder.name.split("-")[-1])


def resolve_resume_checkpoint(training_args, value: str | None = None) -> str | None:
    """`resume_from_checkpoint: auto` -> the newest complete checkpoint in output_dir, or None to start fresh.

    A checkpoint is complete when the Trainer has written its trainer_state.json, the last file it saves, in full
    (it parses, and names the folder's step); a folder killed halfway through saving fails that and is never picked.
    """
    value = training_args.resume_from_checkpoint if value is None else value
    if value in (None, "", "false", "False", "no"):
        return None
    if value not in ("auto", "true", "True"):
        return value
    latest = newest_checkpoint(training_args.output_dir)
    if latest is not None:
        logger.info("Resuming from %s", latest)
    return latest


def newest_checkpoint(output_dir: str | Path) -> str | None:
    """The newest complete checkpoint-<step> folder in output_dir (see resolve_resume_checkpoint), or None."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    pattern = re.compile(r"^checkpoint-(\d+)$")
    complete = [
        p for p in output_dir.iterdir() if p.is_dir() and pattern.match(p.name) and _complete_checkpoint(p)
    ]
    if not complete:
        return None
    return str(max(complete, key=lambda p: int(pattern.match(p.name).group(1))))


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

        try:
            config = config_from_preset(
                model_args.scratch_preset, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **overrides, **config_kwargs
            )
        except ValueError as error:  # an unknown preset, or config_overrides out of range
            raise RecipeError(str(error)) from error
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


def start_outputs(task: str, model_args, tracking_args, training_args, recipe: dict, model, extra: dict | None = None) -> dict:
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
        logger.info("Model %s: %s parameters (%s trainable)", info["model"], f"{params['total']:,}", f"{params['trainable']:,}")
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
    info["wandb"] = {"id": run.id, "project": run.project, "entity": getattr(run, "entity", None),
                     "offline": bool(getattr(run, "offline", False) or os.environ.get("WANDB_MODE") == "offline")}
    if not info["wandb"]["offline"]:
        info["wandb"]["url"] = run.url
    write_json(path, info)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run stops instead of training on garbage."""


class ShuffledLengthGroups(torch.utils.data.Sampler):
    """The batches of transformers' LengthGroupedSampler, in random order.

    transformers sorts each megabatch of 50 batches by length, so training sees runs of batches going from long to
    short pairs. On the MNLI CPU recipe that cost about 1.2 accuracy points against random batches; the same
    length-grouped batches in shuffled order cost none and keep the padding savings (RESULTS.md, speed levers).
    One "batch" here is what one optimizer step sees (batch size x gradient accumulation), as in transformers.
    """

    def __init__(self, grouped: LengthGroupedSampler):
        self.grouped = grouped

    def __len__(self) -> int:
        return len(self.grouped)

    def __iter__(self):
        indices = list(self.grouped)
        size = self.grouped.batch_size
        batches = [indices[i : i + size] for i in range(0, len(indices), size)]
        order = torch.randperm(len(batches), generator=self.grouped.generator).tolist()
        return iter([index for b in order for index in batches[b]])


class PipelineTrainer(transformers.Trainer):
    """The Trainer, stopping at the first non-finite loss with a message that names the step.

    The Trainer's `logging_nan_inf_filter` would only hide NaN losses from the logged average. Stopping keeps the
    last good checkpoint as it is: nothing is saved after the bad step.
    """

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not torch.isfinite(loss).all():
            checkpoint = resolve_resume_checkpoint(self.args, value="auto")
            raise NonFiniteLossError(
                f"The training loss is {loss.item()} at step {self.state.global_step + 1} "
                f"(epoch {self.state.epoch or 0:.2f}). Training stopped. "
                + (f"The last good checkpoint is {checkpoint}." if checkpoint else "No checkpoint was saved before it.")
                + " Lower the learning rate, use bf16 rather than fp16, or check the inputs of that step."
            )
        return loss

    def _get_train_sampler(self, train_dataset=None):
        """transformers' length grouping, with the order of its batches shuffled (see ShuffledLengthGroups)."""
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler):
            return ShuffledLengthGroups(sampler)
        return sampler

    def _get_eval_sampler(self, eval_dataset):
        """Evaluate in the dataset's order: predictions are matched to examples by position.

        transformers 5 also groups eval batches by length when training does (train_sampling_strategy), which
        returns predictions shuffled. Our task modules sort eval sets by length themselves, which keeps the order known.
        """
        if eval_dataset is None or not hasattr(eval_dataset, "__len__"):
            return None
        return torch.utils.data.SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

    def _save_checkpoint(self, model, trial):
        """A failed checkpoint save (full disk, unwritable folder) names the folder and the last complete checkpoint."""
        try:
            super()._save_checkpoint(model, trial)
        except interruptions.SaveFailedError:
            raise
        except interruptions.WRITE_ERRORS as error:
            last = resolve_resume_checkpoint(self.args, value="auto")
            folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
            raise interruptions.save_failed(error, folder, last) from error

    def _save(self, output_dir: str | None = None, state_dict=None):
        """Save as the Trainer does, but the training arguments as readable JSON with tokens removed,
        instead of the pickled training_args.bin (a pickle runs code when loaded, and it would hold hub_token)."""
        try:
            super()._save(output_dir, state_dict)
        except interruptions.WRITE_ERRORS as error:
            if Path(output_dir or self.args.output_dir).name.startswith("checkpoint-"):
                raise  # _save_checkpoint names it
            last = resolve_resume_checkpoint(self.args, value="auto")
            raise interruptions.save_failed(error, output_dir or self.args.output_dir, last) from error
        output_dir = Path(output_dir or self.args.output_dir)
        pickled = output_dir / "training_args.bin"
        if self.args.should_save and pickled.exists():
            pickled.unlink()
            write_json(output_dir / "training_args.json", self.args.to_dict())


class SafeWandbCallback(WandbCallback):
    """The Trainer's W&B callback, except that a W&B failure (bad key, no network, a crashed wandb process)
    never stops training: the first error is reported once and W&B is switched off for the rest of the run."""

    failed = False

    def _guarded(self, event: str, *args, **kwargs):
        if self.failed:
            return None
        try:
            return getattr(WandbCallback, event)(self, *args, **kwargs)
        except Exception as error:  # anything wandb raises must not end the run
            self.failed = True
            self._wandb = None
            output_dir = args[0].output_dir if args else "output_dir"
            logger.warning(
                "W&B failed during %s (%s: %s). Training goes on without W&B; the metrics are in %s "
                "(trainer_state.json, log_history.json and all_results.json).",
                event, type(error).__name__, error, output_dir,
            )
            return None


for _event in ("on_train_begin", "on_train_end", "on_log", "on_save", "on_predict", "on_evaluate", "on_step_end", "on_epoch_end"):
    if hasattr(WandbCallback, _event):
        setattr(SafeWandbCallback, _event, lambda self, *a, _event=_event, **k: self._guarded(_event, *a, **k))


class RunInfoCallback(transformers.TrainerCallback):
    """Puts the run's metadata (recipe, parameter counts, commit, versions, hardware) in the W&B config."""

    def __init__(self, info: dict):
        self.info = info
        self.sent = False

    def _send(self, state):
        if not self.sent and state.is_world_process_zero:
            # precision also at the top level: the W&B table's column for "which precision did this run use"
            precision = (self.info.get("precision") or {}).get("precision")
            self.sent = tracking.update_wandb_config({"run_info": self.info, "precision": precision})

    def on_train_begin(self, args, state, control, **kwargs):
        self._send(state)

    def on_log(self, args, state, control, **kwargs):
        self._send(state)


def make_trainer(info: dict, trainer_class: type | None = None, **trainer_kwargs) -> PipelineTrainer:
    """A PipelineTrainer (or the subclass given, e.g. distillation's) whose W&B callback cannot crash the run, and
    which sends the run's metadata to W&B."""
    trainer = (trainer_class or PipelineTrainer)(**trainer_kwargs)
    if trainer.pop_callback(WandbCallback) is not None:
        trainer.add_callback(SafeWandbCallback())
    trainer.add_callback(RunInfoCallback(info))
    trainer.add_callback(interruptions.StopOnSignal(trainer))
    return trainer


def apply_peft(model, peft_args, task):
    """Wrap the model in LoRA adapters when the recipe says use_lora (see pipelines/lora.py); `task` is a
    pipelines.tasks.base.Task, which names PEFT's head type."""
    if peft_args is None or not peft_args.use_lora:
        return model
    from pipelines import lora

    return lora.apply_lora(model, peft_args, task.peft_task_type)


def save_trained_model(trainer, peft_args, tokenizer) -> None:
    """Full fine-tuning: the model as the Trainer saves it. LoRA: output_dir/adapter/ plus the merged model in
    output_dir (call after evaluation: merging changes the model in place)."""
    if peft_args is not None and peft_args.use_lora:
        if trainer.is_world_process_zero():
            from pipelines import lora

            lora.save_lora_run(trainer.model, trainer.args.output_dir, tokenizer)
    else:
        trainer.save_model()


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
            logger.warning("W&B failed at the end of the run (%s: %s); results are in %s", type(error).__name__, error, output_dir)
