"""Pretraining speed (scripts/benchmark.py --pretraining): MLM and ELECTRA side by side on the same packed blocks,
with the real Trainer and collator; the timing tools and the matmul ceiling are benchmark.py's.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass

import torch

from pipelines import model_loading, training
from pipelines.arguments import ModelArguments
from pipelines.benchmark import (
    PeakRss,
    StepTimer,
    machine_precision,
    release_freed_memory,
    scratch_kernels_before,
    timing_arguments,
)

PRETRAINING_OBJECTIVES = ("mlm", "electra")


@dataclass(frozen=True)
class PretrainingSetup:
    """How the pretraining steps run: `pretraining_dropout` and `torch_compile` are recipe keys (the packed blocks
    all have one shape, so the model compiles once); `kernels_before` puts back bf16 training's attention and loss
    of our scratch models as they were before 2026-12-03 (benchmark.scratch_kernels_before)."""

    name: str
    dropout: float | None  # None: the model's own (0.1 for the scratch presets), as in the MLM recipes
    torch_compile: bool = False
    kernels_before: bool = False


# The MLM recipe as it ran before 2026-12-03 (configs/pretraining/en_trainside_small_3l_4h_cpu.yaml) first: the
# baseline of the pretraining speed goal. Then today's code, then one lever added at a time.
PRETRAINING_SETUPS = (
    PretrainingSetup("recipe, code before (dropout 0.1)", dropout=None, kernels_before=True),
    PretrainingSetup("recipe (dropout 0.1)", dropout=None),
    PretrainingSetup("dropout 0 (Cramming)", dropout=0.0),
    PretrainingSetup("dropout 0 + torch.compile", dropout=0.0, torch_compile=True),
)


def pretraining_flops_per_token(model, seq_len: int, mlm_probability: float) -> float:
    """Training FLOPs per token of a pretraining model: 6 x the weights every token passes through, the vocabulary
    heads only on the masked share of the tokens, plus attention for each encoder stack (the ELECTRA generator is one).

    Embedding tables are lookups (no FLOPs); a tied output layer is one matmul with the word-embedding matrix.
    """
    config = model.config
    # Weight matrices only (biases and LayerNorms: negligible), the embedding tables left out; a tied decoder weight
    # is the word-embedding table itself, so it is left out here and counted as `vocabulary` below.
    tables = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    matrices = {id(p): p.numel() for p in model.parameters() if p.dim() > 1 and id(p) not in tables}
    heads = [m for name, m in model.named_children() if name in ("lm_head", "generator_head")]
    head_ids = {id(p) for m in heads for p in m.parameters()} & matrices.keys()
    head_params = sum(matrices[i] for i in head_ids)
    body_params = sum(matrices.values()) - head_params
    stacks = [(config.num_hidden_layers, config.hidden_size)]
    generator = getattr(model, "generator", None)
    if generator is not None:
        stacks.append((len(generator.layers), generator.embeddings_project.out_features))
    attention = sum(12 * layers * width * seq_len for layers, width in stacks)
    vocabulary = 2 * config.hidden_size * config.vocab_size  # the tied output matmul, forward
    return 6 * body_params + attention + mlm_probability * (6 * head_params + 3 * vocabulary)


def scratch_model_arguments(preset: str) -> ModelArguments:
    """The pretraining recipes' model: a pre-LN scratch preset with MiniLM's tokenizer."""
    return ModelArguments(scratch_preset=preset, tokenizer_name="minilm", config_overrides="norm_position=pre")


def pretraining_trainer(
    model_args: ModelArguments,
    objective: str,
    dropout: float | None,
    corpus: str,
    output_dir: str,
    max_steps: int,
    batch_size: int,
    callbacks: list,
    torch_compile: bool = False,
    seq_len: int = 128,
):
    """The real Trainer, collator and model of `max_steps` pretraining steps on packed blocks of `corpus`, at the
    precision `precision: auto` picks (timed by measure_pretraining, profiled by scripts/profile_steps.py), and
    the data arguments it was built from."""
    from pipelines.tasks import mlm

    data_args = mlm.PretrainingDataArguments(
        train_files=[corpus],
        validation_split_percentage=5.0,
        max_seq_length=seq_len,
        objective=objective,
        pretraining_dropout=dropout,
        max_train_samples=max_steps * batch_size,
        max_eval_samples=8,
    )
    args = timing_arguments(
        output_dir,
        machine_precision(),
        batch_size,
        max_steps,
        remove_unused_columns=False,
        torch_compile=torch_compile,
    )
    tokenizer = model_loading.load_tokenizer(model_args)
    blocks = mlm.preprocess(mlm.load_raw_datasets(data_args), tokenizer, data_args, args)
    model = mlm.load_pretraining_model(model_args, data_args, tokenizer)
    trainer = training.PipelineTrainer(
        model=model,
        args=args,
        train_dataset=blocks["train"],
        data_collator=mlm.make_pretraining_collator(tokenizer, data_args),
        callbacks=callbacks,
    )
    return trainer, data_args


def measure_pretraining(
    model_args: ModelArguments,
    objective: str,
    setup: PretrainingSetup,
    corpus: str,
    steps: int,
    warmup_steps: int,
    batch_size: int,
    ceilings: dict,
    seq_len: int = 128,
) -> dict:
    """Tokens/s and MFU of `steps` pretraining steps (after `warmup_steps`, which also pay for compilation) with the
    real Trainer and collator."""
    setup_precision = machine_precision()
    release_freed_memory()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as output_dir:
        timer = StepTimer(warmup_steps)
        trainer, data_args = pretraining_trainer(
            model_args,
            objective,
            setup.dropout,
            corpus,
            output_dir,
            warmup_steps + steps,
            batch_size,
            [timer.callback],
            torch_compile=setup.torch_compile,
            seq_len=seq_len,
        )
        model = trainer.model
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        with PeakRss() as memory, scratch_kernels_before(setup.kernels_before):
            started = time.perf_counter()
            trainer.train()
        seconds = timer.end - timer.start
        warmup_seconds = timer.start - started
    tokens = steps * batch_size * seq_len  # packed blocks: every token is real
    flops = pretraining_flops_per_token(model, seq_len, data_args.mlm_probability) * tokens
    return {
        "model": model_args.model_name_or_path or f"scratch:{model_args.scratch_preset}",
        "objective": objective,
        "setup": setup.name,
        "precision": setup_precision,
        "seconds_per_step": seconds / steps,
        "tokens_per_second": tokens / seconds,
        "warmup_seconds": warmup_seconds,
        "mfu": flops / seconds / (ceilings[setup_precision] * 1e9),
        "peak_memory_gb": (torch.cuda.max_memory_allocated() if torch.cuda.is_available() else memory.peak) / 1e9,
    }


def pretraining_markdown_rows(results: list[dict]) -> list[str]:
    """One row per objective and setup; × recipe is the tokens/s against the first row (the MLM recipe before)."""
    recipe = results[0]["tokens_per_second"]
    rows = [
        "| model | objective | setup | s/step | tokens/s | × recipe | MFU | warm-up s | peak memory GB | precision |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows += [
        f"| {r['model']} | {r['objective']} | {r['setup']} | {r['seconds_per_step']:.3f} | "
        f"{r['tokens_per_second']:.0f} | {r['tokens_per_second'] / recipe:.2f} | {r['mfu']:.3f} | "
        f"{r['warmup_seconds']:.1f} | {r['peak_memory_gb']:.2f} | {r['precision']} |"
        for r in results
    ]
    return rows
