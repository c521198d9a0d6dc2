"""Benchmark the reference setup (HF examples' defaults) against this project's defaults, in one process.

python scripts/benchmark.py                      # MiniLM + scratch presets, appends to BENCHMARKS.md
python scripts/benchmark.py --models minilm --steps 10 --no-append
python scripts/benchmark.py --models minilm --levers   # also each lever changed alone (MiniLM: ~15 min)
python scripts/benchmark.py --pretraining --models scratch:small-3l-4h   # MLM vs ELECTRA pretraining steps
"""

import argparse
import datetime
import json
import shlex
import sys
from pathlib import Path

import torch

from pipelines import benchmark, benchmark_pretraining, cli, precision
from pipelines.arguments import ModelArguments

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
    if args.pretraining:
        return pretraining_main(args)

    # The ceilings of the precisions the setups run in here: fp32 (reference) and what `precision: auto` picks.
    # An emulated precision is never timed (a 2048³ bf16 product takes minutes on an AVX2-only CPU).
    in_use = dict.fromkeys(["fp32", benchmark.machine_precision()])
    ceilings = {name: benchmark.matmul_ceiling(precision.DTYPES[name]) for name in in_use}
    print(f"Machine: {benchmark.machine_text()}; project precision (auto): {benchmark.machine_precision()}", flush=True)
    print(f"matmul ceiling: {benchmark.ceilings_text(ceilings)}", flush=True)
    results = []
    train_samples = (args.steps + args.warmup_steps) * args.batch_size
    for name in args.models:
        if name.startswith("scratch:"):
            model_args = ModelArguments(scratch_preset=name.split(":", 1)[1], tokenizer_name="minilm")
        else:
            model_args = ModelArguments(model_name_or_path=name)
        setups = [benchmark.REFERENCE, benchmark.PROJECT]
        if args.levers and name == args.models[0]:
            setups += benchmark.LEVERS
        attempts = 2 if args.warm else 1
        for setup in setups:
            reason = benchmark.not_native_lever(setup)
            if reason:
                print(json.dumps({"model": name, "setup": setup.name, "not_timed": reason}), flush=True)
                results.append(
                    {"model": model_args.model_name_or_path or name, "setup": setup.name, "not_timed": reason}
                )
                continue
            for attempt in range(attempts):
                result = benchmark.measure(
                    model_args,
                    setup,
                    args.data_dir,
                    train_samples,
                    args.eval_samples,
                    args.steps,
                    args.warmup_steps,
                    args.batch_size,
                    ceilings,
                )
                print(json.dumps({**result, "kept": attempt == attempts - 1}), flush=True)
            results.append(result)  # the last attempt
    tokenize = benchmark.tokenization_times(
        ModelArguments(model_name_or_path=args.models[0] if not args.models[0].startswith("scratch:") else "minilm"),
        args.data_dir,
    )
    print(json.dumps(tokenize))
    print("\n".join(benchmark.markdown_rows(results, ceilings)))
    if not args.no_append:
        command = "python " + " ".join(shlex.quote(a) for a in ["scripts/benchmark.py", *sys.argv[1:]])
        note = args.note + (" Each setup measured twice in a row, the second kept (--warm)." if args.warm else "")
        benchmark.append_to_benchmarks(REPO / "BENCHMARKS.md", command, ceilings, results, tokenize, note)


def pretraining_main(args):
    """MLM and ELECTRA pretraining steps of the same scratch model on the same blocks, in one process."""
    ceilings = {
        benchmark.machine_precision(): benchmark.matmul_ceiling(precision.DTYPES[benchmark.machine_precision()])
    }
    print(f"Machine: {benchmark.machine_text()}; matmul ceiling: {benchmark.ceilings_text(ceilings)}", flush=True)
    corpus = str(Path(args.data_dir) / "corpus" / "enwiki_sample.txt")
    results = []
    for name in args.models:
        if not name.startswith("scratch:"):
            raise SystemExit(f"--pretraining times scratch presets (scratch:<preset>), not {name}")
        model_args = benchmark_pretraining.scratch_model_arguments(name.split(":", 1)[1])
        for objective in benchmark_pretraining.PRETRAINING_OBJECTIVES:
            for setup in benchmark_pretraining.PRETRAINING_SETUPS:
                result = benchmark_pretraining.measure_pretraining(
                    model_args, objective, setup, corpus, args.steps, args.warmup_steps, args.batch_size, ceilings
                )
                print(json.dumps(result), flush=True)
                results.append(result)
    rows = benchmark_pretraining.pretraining_markdown_rows(results)
    print("\n".join(rows))
    if not args.no_append:
        command = "python " + " ".join(shlex.quote(a) for a in ["scripts/benchmark.py", *sys.argv[1:]])
        text = [
            f"\n## {datetime.date.today().isoformat()}: pretraining steps, mlm vs electra (scripts/benchmark.py)\n",
            f"Command: `{command}`\n",
            f"Machine: {benchmark.machine_text()}. {args.note}\n",
            f"Matmul ceiling: {benchmark.ceilings_text(ceilings)}. Blocks of 128 real tokens; MFU counts the "
            "generator's FLOPs for electra (pipelines/benchmark_pretraining.py pretraining_flops_per_token).\n",
            *rows,
            "",
        ]
        with (REPO / "BENCHMARKS.md").open("a", encoding="utf-8") as f:
            f.write("\n".join(text) + "\n")


if __name__ == "__main__":
    cli.run(main)
