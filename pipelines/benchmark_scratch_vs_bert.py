"""Training-step throughput of our scratch encoder against transformers' BertForSequenceClassification of the same
shape (scripts/benchmark_scratch_vs_bert.py): the same real MNLI batches, AdamW and sdpa attention, the two models
alternating step by step so that load from other processes falls on both alike."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from pipelines.hub import resolve_model_path
from pipelines.models import ScratchTransformerForSequenceClassification, config_from_preset, count_parameters

DEFAULT_PRESETS = ["small-3l-4h", "small-6l-4h", "small-6l-8h", "minilm-l6-h384"]
NUM_MNLI_LABELS = 3


def mnli_batches(data_dir: str, tokenizer, num_batches: int, batch_size: int, max_length: int) -> list[dict]:
    """The first num_batches * batch_size MNLI training pairs, tokenized per batch (padded to its longest)."""
    pairs = []
    with open(Path(data_dir) / "mnli" / "train.jsonl") as file:
        for line in file:
            pairs.append(json.loads(line))
            if len(pairs) == num_batches * batch_size:
                break
    if len(pairs) < num_batches * batch_size:
        raise ValueError(f"Need {num_batches * batch_size} MNLI pairs, found {len(pairs)}.")
    batches = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        batch = tokenizer(
            [pair["premise"] for pair in chunk],
            [pair["hypothesis"] for pair in chunk],
            truncation=True,
            max_length=max_length,
            padding="longest",
            return_tensors="pt",
        )
        batch["labels"] = torch.tensor([pair["label"] for pair in chunk])
        batches.append(dict(batch))
    return batches


def build_model_pair(preset: str, tokenizer) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Our classifier and a BertForSequenceClassification of identical shape, both in train mode, sdpa."""
    ours_config = config_from_preset(
        preset, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, num_labels=NUM_MNLI_LABELS
    )
    same_shape = {
        name: getattr(ours_config, name)
        for name in (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "hidden_act",
            "hidden_dropout_prob",
            "attention_probs_dropout_prob",
            "max_position_embeddings",
            "type_vocab_size",
            "layer_norm_eps",
            "initializer_range",
            "pad_token_id",
        )
    }
    bert_config = BertConfig(**same_shape, num_labels=NUM_MNLI_LABELS)
    torch.manual_seed(0)
    ours = ScratchTransformerForSequenceClassification(ours_config)
    bert = BertForSequenceClassification._from_config(bert_config, attn_implementation="sdpa")
    assert ours.config._attn_implementation == bert.config._attn_implementation == "sdpa"
    return ours.train(), bert.train()


def train_step(model, optimizer, batch, precision: str) -> None:
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    with autocast:
        loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def time_pair(ours, bert, batches: list[dict], warmup_steps: int, precision: str) -> dict:
    """Alternate the two models on the same batches; return samples/s of each and the median paired ratio.

    The ratio is the median over timed steps of (BERT step time / our step time) on the same batch: a
    burst of load from another process spoils one step's ratio, not the whole total.
    """
    models = {"ours": ours, "bert": bert}
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-4) for name, model in models.items()}
    step_seconds = {"ours": [], "bert": []}
    timed_samples = 0
    for step, batch in enumerate(batches):
        order = ["ours", "bert"] if step % 2 == 0 else ["bert", "ours"]
        for name in order:
            start = time.perf_counter()
            train_step(models[name], optimizers[name], batch, precision)
            if step >= warmup_steps:
                step_seconds[name].append(time.perf_counter() - start)
        if step >= warmup_steps:
            timed_samples += batch["input_ids"].shape[0]
    paired_ratios = [bert_s / ours_s for ours_s, bert_s in zip(step_seconds["ours"], step_seconds["bert"])]
    return {
        "ours": timed_samples / sum(step_seconds["ours"]),
        "bert": timed_samples / sum(step_seconds["bert"]),
        "ratio": statistics.median(paired_ratios),
    }


def compare_presets(
    presets: list[str], data_dir: str, steps: int, warmup_steps: int, batch_size: int, max_length: int, precisions
) -> tuple[list[dict], float]:
    """Each preset's pair timed at each precision on the same batches; returns the rows and the mean padded length."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("minilm"))
    batches = mnli_batches(data_dir, tokenizer, warmup_steps + steps, batch_size, max_length)
    mean_length = sum(batch["input_ids"].shape[1] for batch in batches) / len(batches)
    print(f"{len(batches)} batches of {batch_size}, mean padded length {mean_length:.0f}", flush=True)

    results = []
    for preset in presets:
        ours, bert = build_model_pair(preset, tokenizer)
        ours_params, bert_params = count_parameters(ours).total, count_parameters(bert).total
        print(f"{preset}: parameters ours {ours_params:,} / BERT {bert_params:,}", flush=True)
        if ours_params != bert_params:
            print(f"  WARNING: parameter counts differ by {ours_params - bert_params:,}", flush=True)
        for precision in precisions:
            timing = time_pair(ours, bert, batches, warmup_steps, precision)
            results.append(
                dict(timing, preset=preset, precision=precision, ours_params=ours_params, bert_params=bert_params)
            )
            print(
                f"  {precision}: ours {timing['ours']:7.1f} samples/s, BERT {timing['bert']:7.1f} samples/s, "
                f"median step ratio ours/BERT {timing['ratio']:.2f}",
                flush=True,
            )
    return results, mean_length


def markdown_report(
    command: str,
    results: list[dict],
    mean_length: float,
    max_length: int,
    batch_size: int,
    warmup_steps: int,
    steps: int,
) -> str:
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        f"### {now}: scratch encoder vs BertForSequenceClassification, training steps",
        "",
        f"Command (from the repo root): `{command}`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores shared with other jobs "
        f"(1-min load average {load:.1f} at the end), torch {torch.__version__}, "
        f"torch threads: {torch.get_num_threads()}. "
        f"Real MNLI train pairs, MiniLM tokenizer, dynamic padding (mean padded length {mean_length:.0f}, "
        f"max {max_length}), batch {batch_size}, {warmup_steps} warm-up + {steps} timed steps "
        "per model and precision; step = forward + backward + AdamW; both models use sdpa attention. "
        "samples/s = timed samples / summed step time; ratio = median over steps of BERT step time / our "
        "step time on the same batch (>1: ours faster). Few steps on a CPU shared with other jobs: "
        "differences of several percent are noise.",
        "",
        "| preset | params (ours) | params (BERT) | precision | ours samples/s | BERT samples/s | ratio ours/BERT |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for row in results:
        lines.append(
            f"| {row['preset']} | {row['ours_params']:,} | {row['bert_params']:,} | {row['precision']} "
            f"| {row['ours']:.1f} | {row['bert']:.1f} | {row['ratio']:.2f} |"
        )
    return "\n".join(lines) + "\n"
