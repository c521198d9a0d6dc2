"""LoRA fine-tuning with PEFT: which layers get adapters, training only them and the task head, saving, loading,
and merging the adapters back into plain weights for export.

A recipe turns LoRA on with the keys of `PeftArguments`:

    use_lora: true
    lora_r: 8
    lora_alpha: 16
    lora_dropout: 0.1
    # lora_target_modules / lora_modules_to_save: left out = found from the model, see below

The order of use in a task's `main`:

    model = model_loading.load_model(...)                 # the pretrained encoder with a new task head
    model = apply_lora(model, peft_args, "SEQ_CLS")       # frozen encoder + trainable adapters and head
    ... train with the Trainer ...
    save_lora_run(trainer.model, output_dir, tokenizer)   # output_dir/adapter/ + merged full model in output_dir

Which layers, when the recipe does not say:
- adapters go on every Linear layer inside the attention block of each encoder layer. That is query/key/value and
  the attention output for BERT (`attention.self.query`, ..., `attention.output.dense`), `q_lin`/`k_lin`/`v_lin`/
  `out_lin` for DistilBERT, and the fused `qkv` plus `out_proj` for our ScratchTransformer. They are found by
  looking at the model's module names, so a new architecture needs no table here.
- the task head is trained in full and saved with the adapter (PEFT's `modules_to_save`): the modules of the task
  model outside its encoder (`classifier`, DistilBERT's `pre_classifier`, our `pooler`, `qa_outputs`), plus the
  encoder's own pooler where it has one (BERT), since the classifier reads its output.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from pipelines.arguments import RecipeError

logger = logging.getLogger("pipelines")

ADAPTER_FOLDER = "adapter"  # inside a run's output folder


@dataclass
class PeftArguments:
    """LoRA (low-rank adapters): train small matrices beside the frozen attention weights, plus the task head."""

    use_lora: bool = field(
        default=False, metadata={"help": "Fine-tune with LoRA adapters instead of updating every weight."}
    )
    lora_r: int = field(default=8, metadata={"help": "Rank of each adapter (the inner size of its two matrices)."})
    lora_alpha: int = field(
        default=16, metadata={"help": "Adapter output scale: the update is multiplied by lora_alpha / lora_r."}
    )
    lora_dropout: float = field(default=0.1, metadata={"help": "Dropout on the adapter's input."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Layers that get adapters (suffixes of module names, e.g. attention.self.query). "
            "Default: every Linear layer inside each layer's attention block."
        },
    )
    lora_modules_to_save: list[str] | None = field(
        default=None,
        metadata={
            "help": "Modules trained in full and saved with the adapter. Default: the task head (and BERT's pooler)."
        },
    )

    def __post_init__(self):
        if self.lora_r <= 0 or self.lora_alpha <= 0:
            raise RecipeError(
                f"lora_r and lora_alpha must be positive, got lora_r={self.lora_r}, lora_alpha={self.lora_alpha}"
            )
        if not 0 <= self.lora_dropout < 1:
            raise RecipeError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")


# --- Finding the layers -------------------------------------------------------------------------------------


def encoder_of(model: nn.Module) -> nn.Module:
    """The pretrained body of a task model (`model.bert`, `model.distilbert`, `model.transformer`, ...)."""
    encoder = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if not isinstance(encoder, nn.Module):
        raise RecipeError(
            f"{type(model).__name__} has no encoder under base_model_prefix: "
            "set lora_target_modules and lora_modules_to_save."
        )
    return encoder


def find_task_head(model: nn.Module) -> list[str]:
    """Names of the modules that make up the task head (see the module docstring)."""
    encoder = encoder_of(model)
    head = [
        name for name, child in model.named_children() if child is not encoder and any(True for _ in child.parameters())
    ]
    pooler = getattr(encoder, "pooler", None)
    if isinstance(pooler, nn.Module) and any(True for _ in pooler.parameters()):
        head.append("pooler")
    return head


def find_attention_projections(model: nn.Module) -> list[str]:
    """Suffixes naming every Linear layer inside an attention block, one per kind,
    e.g. ["attention.qkv", "attention.out_proj"].

    A full name like `encoder.layer.3.attention.self.query` becomes `attention.self.query` (what follows the layer
    number): PEFT matches target modules by name suffix, so one entry covers that layer in every block.
    """
    suffixes = []
    for name, module in encoder_of(model).named_modules():
        if isinstance(module, nn.Linear) and "attention" in name.split(".")[:-1]:
            after_layer_number = re.search(r"\.\d+\.(.+)$", name)
            suffix = after_layer_number.group(1) if after_layer_number else name.split(".")[-1]
            if suffix not in suffixes:
                suffixes.append(suffix)
    if not suffixes:
        linear = sorted({n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise RecipeError(
            f"No Linear layer inside an attention block of {type(model).__name__}: "
            f"set lora_target_modules to some of {linear}."
        )
    return suffixes


# --- Training, saving, loading, merging ---------------------------------------------------------------------


def apply_lora(model, peft_args: PeftArguments, task_type: str):
    """Wrap a pretrained task model in a PEFT model: base weights frozen, adapters and task head trainable.

    `task_type` is PEFT's: "SEQ_CLS" (classification) or "QUESTION_ANS" (QA), as `Task.peft_task_type` gives it.
    """
    from peft import LoraConfig, get_peft_model

    if not getattr(model, "name_or_path", ""):
        # A frozen random encoder cannot learn anything, and its weights would be in no file the adapter could refer to.
        raise RecipeError(
            "LoRA adapts a pretrained model, but this one has random weights (scratch_preset). Set model_name_or_path "
            "to a checkpoint instead, e.g. an MLM-pretrained scratch_transformer folder from "
            "scripts/run_pretraining.py."
        )
    config = LoraConfig(
        task_type=task_type,
        r=peft_args.lora_r,
        lora_alpha=peft_args.lora_alpha,
        lora_dropout=peft_args.lora_dropout,
        target_modules=peft_args.lora_target_modules or find_attention_projections(model),
        modules_to_save=peft_args.lora_modules_to_save or find_task_head(model),
        bias="none",
    )
    peft_model = get_peft_model(model, config)
    trainable, total = peft_model.get_nb_trainable_parameters()
    logger.info(
        "LoRA r=%d alpha=%d on %s; trained in full: %s. Trainable parameters: %s of %s (%.2f%%)",
        config.r,
        config.lora_alpha,
        sorted(config.target_modules),
        sorted(config.modules_to_save),
        f"{trainable:,}",
        f"{total:,}",
        100 * trainable / total,
    )
    return peft_model


def save_adapter(peft_model, adapter_dir: str | Path, tokenizer=None) -> Path:
    """adapter_config.json + adapter_model.safetensors (adapters and the trained head), and the tokenizer."""
    adapter_dir = Path(adapter_dir)
    peft_model.save_pretrained(adapter_dir)
    if tokenizer is not None:
        tokenizer.save_pretrained(adapter_dir)
    return adapter_dir


def load_adapter(base, adapter_dir: str | Path, auto_class=None, **model_kwargs):
    """A saved adapter on top of its base model, ready for inference (eval mode, nothing trainable).

    `base` is a model built the way training built it (same task head size), or a checkpoint path loaded with
    `auto_class.from_pretrained(base, **model_kwargs)` (pass num_labels/id2label for a classifier).
    """
    from peft import PeftModel

    if isinstance(base, (str, Path)):
        if auto_class is None:
            raise ValueError(
                "load_adapter: give auto_class (e.g. AutoModelForSequenceClassification) to load the base from a path"
            )
        base = auto_class.from_pretrained(base, **model_kwargs)
    return PeftModel.from_pretrained(base, str(adapter_dir)).eval()


def merge_and_export(peft_model, out_dir: str | Path, tokenizer=None):
    """Fold the adapters into the base weights and save a plain model (safetensors, plus our model code and
    auto_map for ScratchTransformer) that loads without PEFT. Returns the merged model.

    The PEFT model is merged in place: afterwards it no longer holds adapters.
    """
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(out_dir)
    if tokenizer is not None:
        tokenizer.save_pretrained(out_dir)
    return merged


def save_lora_run(peft_model, output_dir: str | Path, tokenizer=None):
    """The end of a LoRA run: the adapter in output_dir/adapter/, the merged model in output_dir itself.

    The merged model in output_dir is what evaluation reads, predict.py runs and push_to_hub.py uploads, the same
    files as a full fine-tuning run. The adapter must not sit in output_dir itself: `from_pretrained` would then
    apply it a second time on top of the merged weights. Returns the merged model.
    """
    output_dir = Path(output_dir)
    save_adapter(peft_model, output_dir / ADAPTER_FOLDER, tokenizer)
    for stray in ("adapter_config.json", "adapter_model.safetensors"):  # left by trainer.save_model() on a PEFT model
        (output_dir / stray).unlink(missing_ok=True)
    return merge_and_export(peft_model, output_dir, tokenizer)
