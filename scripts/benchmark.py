"""Benchmark the reference setup (HF examples' defaults) against this project's defaults, in one process.

python scripts/benchmark.py                      # MiniLM + scratch presets, appends to BENCHMARKS.md
python scripts/benchmark.py --models minilm --steps 10 --no-append
python scripts/benchmark.py --models minilm --levers   # also each lever changed alone (MiniLM: ~15 min)
python scripts/benchmark.py --pretraining --models scratch:small-3l-4h   # MLM vs ELECTRA pretraining steps
"""

import argparse
import shlex
import sys
from pathlib import Path

import torch

from pipelines import benchmark, benchmark_pretraining, cli
from pipelines.benchmark_runs import append_pretraining_entry, compare_pretraining, compare_setups

REPO = Path(__file__).resolve().parent.parent


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument(
        "--models",
        nargs="+",
        default=["minilm", "scratch:small-3l-4h", "scratch:minilm-l6-h384"],
        help="model names/paths, or scratch:<preset> (tokenizer: minilm)",
    )
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per setup")
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-samples", type=int, default=2048, help="dev-matched pairs evaluated per setup")
    parser.add_argument("--note", default="", help="free text recorded with the results (e.g. other load)")
    parser.add_argument(
        "--levers",
        action="store_true",
        help="also measure the project setup with one lever changed at a time (first model only)",
    )
    parser.add_argument(
        "--warm",
        action=argparse.BooleanOptionalAction,
        default=torch.cuda.is_available(),
        help="measure each setup twice and keep the second: the first run makes the kernel choices "
        "for every batch shape (on a GPU it measured up to 3x slower). Default: on with a GPU",
    )
    parser.add_argument("--no-append", action="store_true", help="print only; do not append to BENCHMARKS.md")
    parser.add_argument(
        "--pretraining",
        action="store_true",
        help="time pretraining steps instead (mlm and electra, packed blocks of 128 from "
        "<data-dir>/corpus/enwiki_sample.txt); scratch models only",
    )
    args = parser.parse_args()
    command = "python " + " ".join(shlex.quote(a) for a in ["scripts/benchmark.py", *sys.argv[1:]])
    if args.pretraining:
        try:
            results, ceilings = compare_pretraining(
                args.models, args.data_dir, args.steps, args.warmup_steps, args.batch_size
            )
        except ValueError as error:
            raise SystemExit(str(error)) from error
        rows = benchmark_pretraining.pretraining_markdown_rows(results)
        print("\n".join(rows))
        if not args.no_append:
            append_pretraining_entry(REPO / "BENCHMARKS.md", command, args.note, ceilings, rows)
        return

    results, ceilings, tokenize = compare_setups(
        args.models,
        args.data_dir,
        args.steps,
        args.warmup_steps,
        args.batch_size,
        args.eval_samples,
        levers=args.levers,
        warm=args.warm,
    )
    print("\n".join(benchmark.markdown_rows(results, ceilings)))
    if not args.no_append:
        note = args.note + (" Each setup measured twice in a row, the second kept (--warm)." if args.warm else "")
        benchmark.append_to_benchmarks(REPO / "BENCHMARKS.md", command, ceilings, results, tokenize, note)


if __name__ == "__main__":
    cli.run(main)
