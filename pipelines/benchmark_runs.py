"""What scripts/benchmark.py runs: every model in the reference setup and the project's (and, with levers, each lever
alone), or the pretraining objectives in each pretraining setup, all in one process against the matmul ceilings
measured in the same run; then the markdown rows and the entry appended to BENCHMARKS.md."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from pipelines import benchmark, benchmark_pretraining, precision
from pipelines.arguments import ModelArguments


def model_arguments(name: str) -> ModelArguments:
    """A model name or path, or scratch:<preset> (tokenizer: minilm)."""
    if name.startswith("scratch:"):
        return ModelArguments(scratch_preset=name.split(":", 1)[1], tokenizer_name="minilm")
    return ModelArguments(model_name_or_path=name)


def compare_setups(
    models: list[str],
    data_dir: str,
    steps: int,
    warmup_steps: int,
    batch_size: int,
    eval_samples: int,
    levers: bool = False,
    warm: bool = False,
) -> tuple[list[dict], dict, dict]:
    """Each model in the reference and project setups (and each lever alone on the first model), each result printed
    as a JSON line; returns the results, the matmul ceilings and the tokenization times."""
    # The ceilings of the precisions the setups run in here: fp32 (reference) and what `precision: auto` picks.
    # An emulated precision is never timed (a 2048³ bf16 product takes minutes on an AVX2-only CPU).
    in_use = dict.fromkeys(["fp32", benchmark.machine_precision()])
    ceilings = {name: benchmark.matmul_ceiling(precision.DTYPES[name]) for name in in_use}
    print(f"Machine: {benchmark.machine_text()}; project precision (auto): {benchmark.machine_precision()}", flush=True)
    print(f"matmul ceiling: {benchmark.ceilings_text(ceilings)}", flush=True)
    results = []
    train_samples = (steps + warmup_steps) * batch_size
    for name in models:
        model_args = model_arguments(name)
        setups = [benchmark.REFERENCE, benchmark.PROJECT]
        if levers and name == models[0]:
            setups += benchmark.LEVERS
        attempts = 2 if warm else 1
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
                    data_dir,
                    train_samples,
                    eval_samples,
                    steps,
                    warmup_steps,
                    batch_size,
                    ceilings,
                )
                print(json.dumps({**result, "kept": attempt == attempts - 1}), flush=True)
            results.append(result)  # the last attempt
    tokenize = benchmark.tokenization_times(
        ModelArguments(model_name_or_path=models[0] if not models[0].startswith("scratch:") else "minilm"), data_dir
    )
    print(json.dumps(tokenize))
    return results, ceilings, tokenize


def compare_pretraining(
    models: list[str], data_dir: str, steps: int, warmup_steps: int, batch_size: int
) -> tuple[list[dict], dict]:
    """MLM and ELECTRA pretraining steps of the same scratch models on the same blocks, in every pretraining setup;
    returns the results (each also printed as a JSON line) and the ceiling of the precision they ran in."""
    in_use = benchmark.machine_precision()
    ceilings = {in_use: benchmark.matmul_ceiling(precision.DTYPES[in_use])}
    print(f"Machine: {benchmark.machine_text()}; matmul ceiling: {benchmark.ceilings_text(ceilings)}", flush=True)
    corpus = str(Path(data_dir) / "corpus" / "enwiki_sample.txt")
    results = []
    for name in models:
        if not name.startswith("scratch:"):
            raise ValueError(f"--pretraining times scratch presets (scratch:<preset>), not {name}")
        model_args = benchmark_pretraining.scratch_model_arguments(name.split(":", 1)[1])
        for objective in benchmark_pretraining.PRETRAINING_OBJECTIVES:
            for setup in benchmark_pretraining.PRETRAINING_SETUPS:
                result = benchmark_pretraining.measure_pretraining(
                    model_args, objective, setup, corpus, steps, warmup_steps, batch_size, ceilings
                )
                print(json.dumps(result), flush=True)
                results.append(result)
    return results, ceilings


def append_pretraining_entry(path: Path, command: str, note: str, ceilings: dict, rows: list[str]) -> None:
    """A dated BENCHMARKS.md entry with the command, the machine, the ceiling and the rows."""
    text = [
        f"\n## {datetime.date.today().isoformat()}: pretraining steps, mlm vs electra (scripts/benchmark.py)\n",
        f"Command: `{command}`\n",
        f"Machine: {benchmark.machine_text()}. {note}\n",
        f"Matmul ceiling: {benchmark.ceilings_text(ceilings)}. Blocks of 128 real tokens; MFU counts the "
        "generator's FLOPs for electra (pipelines/benchmark_pretraining.py pretraining_flops_per_token).\n",
        *rows,
        "",
    ]
    with path.open("a", encoding="utf-8") as f:
        f.write("\n".join(text) + "\n")
