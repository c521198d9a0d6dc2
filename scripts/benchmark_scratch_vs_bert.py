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
import os
import shlex
import sys
from pathlib import Path

import torch

from pipelines import cli
from pipelines.benchmark_scratch_vs_bert import DEFAULT_PRESETS, compare_presets, markdown_report

REPO_ROOT = Path(__file__).resolve().parents[1]


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


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results, mean_length = compare_presets(
        args.presets, args.data_dir, args.steps, args.warmup_steps, args.batch_size, args.max_length, args.precisions
    )
    command = "python " + " ".join(shlex.quote(arg) for arg in [os.path.relpath(sys.argv[0], REPO_ROOT), *sys.argv[1:]])
    report = markdown_report(
        command, results, mean_length, args.max_length, args.batch_size, args.warmup_steps, args.steps
    )
    print("\n" + report)
    if not args.no_record:
        with open(args.benchmarks_file, "a") as file:
            file.write("\n" + report)
        print(f"Appended to {args.benchmarks_file}")


if __name__ == "__main__":
    cli.run(main)
