"""The tokenizer and model a run trains (a pretrained checkpoint or a scratch preset), checked to fit each other,
LoRA adapters when the recipe asks, and the trained model saved at the end.
"""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoTokenizer

import pipelines.models  # noqa: F401  registers our model classes with the Auto classes
from pipelines.arguments import RecipeError, parse_overrides
from pipelines.hub import load_pretrained, resolve_model_path


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
                model_args.scratch_preset,
                vocab_size=len(tokenizer),
                pad_token_id=tokenizer.pad_token_id,
                **overrides,
                **config_kwargs,
            )
        except ValueError as error:  # an unknown preset, or config_overrides out of range
            raise RecipeError(str(error)) from error
        model = auto_model_class.from_config(config)
    else:
        path = resolve_model_path(model_args.model_name_or_path)
        config = load_pretrained(
            AutoConfig,
            path,
            what="model config",
            cache_dir=model_args.cache_dir,
            revision=model_args.model_revision,
            trust_remote_code=model_args.trust_remote_code,
            **overrides,
            **config_kwargs,
        )
        model = load_pretrained(
            auto_model_class,
            path,
            config=config,
            cache_dir=model_args.cache_dir,
            revision=model_args.model_revision,
            trust_remote_code=model_args.trust_remote_code,
            ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
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
        raise RecipeError(
            f"max_seq_length {max_seq_length} is beyond the model's {positions} positions (max_position_embeddings)."
        )


def count_parameters(model) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    embedding_modules = [m for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    embedding = sum(p.numel() for m in embedding_modules for p in m.parameters())
    return {"total": total, "trainable": trainable, "embedding": embedding, "non_embedding": total - embedding}


def apply_peft(model, peft_args, task):
    """Wrap the model in LoRA adapters when the recipe says use_lora (see pipelines/lora.py); `task` is a
    pipelines.task_definitions.base.Task, which names PEFT's head type."""
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
