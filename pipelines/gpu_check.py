"""The GPU check (scripts/gpu_check.py): each check in its own process with its own timeout, one markdown summary
rewritten after every check. The module docstring of scripts/gpu_check.py lists the checks."""

from __future__ import annotations

import datetime
import json
import os
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.check_processes import REPO, Budget, exit_text, launch, run_process, tail
from pipelines.gpu_check_inputs import (
    PROFILES,
    Inputs,
    Profile,
    find_data_dir,
    mnli_recipe,
    prepare_data,
    prepare_model,
    write_recipe,
)


@dataclass
class Result:
    check: str
    status: str  # passed, failed, skipped
    seconds: float = 0.0
    numbers: str = ""
    log_tail: str = ""
    rows: list[dict] = field(default_factory=list)  # benchmark rows


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


# --- The checks ----------------------------------------------------------------------------------------------------


def check_precision(**_) -> Result:
    import torch

    from pipelines import precision

    on_gpu = torch.cuda.is_available()
    choice = precision.choose("auto", None, precision.detect_hardware(use_cpu=not on_gpu))
    numbers = f"{choice.precision}: {choice.reason}"
    if on_gpu:
        major, _ = torch.cuda.get_device_capability()
        expected = "bf16" if major >= 8 else "fp16"
        return Result(
            "precision",
            "passed" if choice.precision == expected else "failed",
            numbers=f"{numbers} (expected {expected})",
        )
    return Result("precision", "passed" if choice.precision in ("bf16", "fp32") else "failed", numbers=numbers)


def single_process(profile: Profile, script: str, recipe: Path) -> list[str]:
    """One training process: through `accelerate launch` and the default launch config on a GPU, as users run it."""
    import torch

    if not profile.accelerate:
        return [sys.executable, str(REPO / "scripts" / script), str(recipe)]
    config = "accelerate_config.yaml" if torch.cuda.is_available() else "configs/accelerate_cpu.yaml"
    return launch(config, script, recipe, processes=1)


def check_mnli(inputs: Inputs, profile: Profile, work: Path, timeout: float, **_) -> Result:
    recipe = mnli_recipe(inputs, profile, work, "mnli", profile.mnli_steps)
    status, lines = run_process(single_process(profile, "run_mnli.py", recipe), timeout, work / "logs" / "mnli.log")
    results_path = work / "mnli" / "all_results.json"
    if status != 0 or not results_path.is_file():
        return Result("mnli", "failed", numbers=exit_text(status), log_tail=tail(lines))
    results, info = read_json(results_path), read_json(work / "mnli" / "run_info.json")
    run_precision = (info.get("precision") or {}).get("precision", info.get("mixed_precision"))
    numbers = (
        f"{profile.mnli_steps} steps × {profile.batch_size}, {run_precision}: train "
        f"{results['train_samples_per_second']:.1f} samples/s; eval matched "
        f"{results['eval_matched_samples_per_second']:.0f} "
        f"samples/s (accuracy {results['eval_matched_accuracy']:.3f}, random weights); peak memory "
        f"{results['peak_memory_mb'] / 1024:.2f} GB"
    )
    return Result("mnli", "passed", numbers=numbers)


def check_qa(inputs: Inputs, profile: Profile, work: Path, timeout: float, **_) -> Result:
    output_dir = work / "qa"
    changes = {
        "model_name_or_path": inputs.model,
        "train_file": str(inputs.squad_train),
        "validation_file": str(inputs.squad_dev),
        "output_dir": str(output_dir),
        "max_steps": profile.qa_steps,
        "max_train_samples": profile.qa_steps * profile.batch_size,
        "per_device_train_batch_size": profile.batch_size,
        "max_eval_samples": profile.eval_samples,
        "save_strategy": "no",
        "logging_steps": max(1, profile.qa_steps // 5),
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": profile.dataloader_workers,
    }
    if profile.model:  # the tiny fixture's contexts are short: small windows
        changes.update({"max_seq_length": 64, "doc_stride": 16, "max_query_length": 16})
    recipe = write_recipe("configs/qa/squad_distilbert.yaml", work / "qa.yaml", changes, drop=("dataset_name",))
    status, lines = run_process(single_process(profile, "run_qa.py", recipe), timeout, work / "logs" / "qa.log")
    results_path = output_dir / "all_results.json"
    if status != 0 or not results_path.is_file():
        return Result("qa", "failed", numbers=exit_text(status), log_tail=tail(lines))
    results = read_json(results_path)
    numbers = (
        f"{profile.qa_steps} steps × {profile.batch_size}: "
        f"train {results['train_samples_per_second']:.1f} samples/s; "
        f"{results['eval_total']} questions evaluated, EM {results['eval_exact_match']:.1f}, "
        f"F1 {results['eval_f1']:.1f} (random weights)"
    )
    return Result("qa", "passed", numbers=numbers)


def check_ddp(inputs: Inputs, profile: Profile, work: Path, timeout: float, **_) -> Result:
    import torch

    gpus = torch.cuda.device_count()
    if torch.cuda.is_available() and gpus < 2:
        return Result("ddp", "skipped", numbers="one GPU: nothing to spread over")
    processes = gpus if gpus >= 2 else 2
    config = "accelerate_config.yaml" if gpus >= 2 else "configs/accelerate_cpu_ddp.yaml"
    recipe = mnli_recipe(inputs, profile, work, "ddp", profile.mnli_steps)
    command = launch(config, "run_mnli.py", recipe, processes=processes)
    status, lines = run_process(command, timeout, work / "logs" / "ddp.log")
    results_path = work / "ddp" / "all_results.json"
    if status != 0 or not results_path.is_file():
        return Result("ddp", "failed", numbers=exit_text(status), log_tail=tail(lines))
    info, results = read_json(work / "ddp" / "run_info.json"), read_json(results_path)
    world = info.get("world_size")
    numbers = (
        f"{processes} processes ({config}): world size {world}, train {results['train_samples_per_second']:.1f} "
        f"samples/s over all processes"
    )
    return Result("ddp", "passed" if world == processes else "failed", numbers=numbers)


def check_resume(inputs: Inputs, profile: Profile, work: Path, timeout: float, **_) -> Result:
    """SIGTERM once the first loss is logged; the run saves a checkpoint and exits 143; the rerun resumes from it."""
    steps = profile.resume_steps
    recipe = mnli_recipe(
        inputs, profile, work, "resume", steps, save_strategy="steps", save_steps=10 * steps, logging_steps=1
    )
    command = [sys.executable, str(REPO / "scripts" / "run_mnli.py"), str(recipe)]
    log = work / "logs" / "resume.log"
    started = time.monotonic()
    sent = []

    def stop_at_first_loss(process, line):
        if not sent and "'loss'" in line:
            process.send_signal(signal.SIGTERM)
            sent.append(True)

    status, lines = run_process(command, timeout, log, on_line=stop_at_first_loss)
    checkpoints = sorted((work / "resume").glob("checkpoint-*"))
    if status != 128 + signal.SIGTERM or not checkpoints:
        return Result(
            "resume",
            "failed",
            log_tail=tail(lines),
            numbers=f"interrupted run: {exit_text(status)}, checkpoints: {len(checkpoints)} "
            f"(expected exit 143 and one checkpoint)",
        )
    stopped_at = int(checkpoints[-1].name.split("-")[1])
    remaining = timeout - (time.monotonic() - started)
    status, lines = run_process([*command, "--resume_from_checkpoint", "auto"], remaining, log)
    state_path = work / "resume" / "trainer_state.json"
    resumed = any("Resuming from" in line for line in lines)
    final_step = read_json(state_path).get("global_step") if state_path.is_file() else None
    numbers = (
        f"SIGTERM at step {stopped_at} of {steps}: exit 143, {checkpoints[-1].name} saved; rerun with "
        f"--resume_from_checkpoint auto: {exit_text(status)}, resumed: {resumed}, final step {final_step}"
    )
    passed = status == 0 and resumed and final_step == steps
    return Result("resume", "passed" if passed else "failed", numbers=numbers, log_tail="" if passed else tail(lines))


def check_benchmark(inputs: Inputs, profile: Profile, work: Path, timeout: float, batch: int, **_) -> Result:
    steps = profile.benchmark_steps[batch]
    command = [
        sys.executable,
        str(REPO / "scripts" / "benchmark.py"),
        "--data-dir",
        str(inputs.mnli_dir.parent),
        "--models",
        inputs.model,
        "--steps",
        str(steps),
        "--warmup-steps",
        str(max(1, steps // 6)),
        "--batch-size",
        str(batch),
        "--eval-samples",
        str(min(2048, 8 * profile.eval_samples)),
        "--no-append",
    ]
    status, lines = run_process(command, timeout, work / "logs" / f"benchmark_b{batch}.log")
    rows = []
    for line in lines:
        if line.startswith("{"):
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if row.get("kept", True) and "train_samples_per_second" in row:
                rows.append(row)
    by_setup = {row["setup"]: row for row in rows}
    if not {"reference", "project"} <= set(by_setup):  # the rows are what this check is for; tokenization may time out
        return Result(f"benchmark b{batch}", "failed", numbers=exit_text(status), log_tail=tail(lines), rows=rows)
    project, reference = by_setup["project"], by_setup["reference"]
    numbers = (
        f"project {project['train_samples_per_second']:.0f} samples/s "
        f"({project['train_samples_per_second'] / reference['train_samples_per_second']:.2f}× reference), "
        f"MFU {project['mfu']:.3f} ({project['precision']}); eval "
        f"{project['eval_samples_per_second'] / reference['eval_samples_per_second']:.2f}× reference"
    )
    return Result(f"benchmark b{batch}", "passed", numbers=numbers, rows=rows)


# --- The summary


def machine_lines() -> list[str]:
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return [
        f"- torch {torch.__version__} (CUDA {torch.version.cuda}), {os.cpu_count()} CPU cores, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}",
        f"- GPUs: {len(gpus)}" + (f" ({', '.join(gpus)})" if gpus else ""),
    ]


def write_summary(path: Path, header: list[str], results: list[Result], started: float) -> None:
    lines = [*header, "", "| check | result | seconds | numbers |", "|---|---|---:|---|"]
    for r in results:
        lines.append(f"| {r.check} | {r.status} | {r.seconds:.0f} | {r.numbers.replace('|', '/')} |")
    counts = {s: sum(r.status == s for r in results) for s in ("passed", "failed", "skipped")}
    lines += [
        "",
        f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped; "
        f"{time.monotonic() - started:.0f} s in all.",
    ]
    for r in results:
        if r.rows:
            lines += [
                "",
                f"### {r.check}: scripts/benchmark.py rows",
                "",
                "| setup | precision | train samples/s | real tokens/s | MFU | peak memory GB | eval samples/s |",
                "|---|---|---:|---:|---:|---:|---:|",
            ]
            lines += [
                f"| {row['setup']} | {row.get('precision', '-')} | {row['train_samples_per_second']:.1f} | "
                f"{row['train_real_tokens_per_second']:.0f} | {row['mfu']:.3f} | "
                f"{row.get('peak_gpu_memory_gb', row['peak_rss_gb']):.2f} | "
                f"{row['eval_samples_per_second']:.1f} |"
                for row in r.rows
            ]
    for r in results:
        if r.log_tail:
            lines += ["", f"### {r.check}: last lines of its output", "", "```", r.log_tail.rstrip(), "```"]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# --- All checks ----------------------------------------------------------------------------------------------------


def run_checks(
    output: Path,
    profile_name: str,
    budget_seconds: float,
    data_dir: str | None = None,
    model: str | None = None,
    work_dir: str | None = None,
    only: list[str] | None = None,
    command: str = "",
) -> int:
    """Every check (or `only` these) in order, the summary rewritten after each; returns 1 if any failed, else 0."""
    started = time.monotonic()
    budget = Budget(budget_seconds)
    profile = PROFILES[profile_name]
    work = Path(work_dir or tempfile.mkdtemp(prefix="gpu_check_"))
    output = Path(output).resolve()
    header = [
        f"# gpu_check: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `{command}` (profile {profile_name}, budget {budget_seconds:.0f} s); runs and logs in {work}",
        *machine_lines(),
    ]
    results: list[Result] = []

    try:
        mnli_dir, squad_train, squad_dev, data_note = prepare_data(find_data_dir(data_dir), work, profile_name)
        model_path = model or prepare_model(work / "distilbert-random", profile)
        inputs = Inputs(model_path, mnli_dir, squad_train, squad_dev, data_note)
        shape = "" if model else " (DistilBERT shape, random weights)"
        header += [f"- model: {model_path}{shape}", f"- data: {data_note}"]
    except Exception:  # without model or data only the precision check can run
        inputs = None
        header += ["- preparing the model or the data FAILED:", "```", traceback.format_exc().rstrip(), "```"]

    checks = [
        ("precision", check_precision, {}),
        ("mnli", check_mnli, {}),
        ("qa", check_qa, {}),
        ("resume", check_resume, {}),
        ("ddp", check_ddp, {}),
    ]
    checks += [("benchmark", check_benchmark, {"batch": b}) for b in profile.benchmark_batches]
    for name, check, extra in checks:
        if only and name not in only:
            continue
        label = f"{name} b{extra['batch']}" if "batch" in extra else name
        timeout = budget.timeout(profile.timeouts.get(name, 60))
        start = time.monotonic()
        if timeout < 20:
            result = Result(label, "skipped", numbers="time budget spent")
        elif inputs is None and name != "precision":
            result = Result(label, "failed", numbers="no model or data (see above)")
        else:
            print(f"gpu_check: {label} (timeout {timeout:.0f} s)", flush=True)
            try:
                result = check(inputs=inputs, profile=profile, work=work, timeout=timeout, **extra)
            except Exception as error:  # a bug or a missing file in one check must not stop the others
                result = Result(
                    label, "failed", numbers=f"{type(error).__name__}: {error}", log_tail=traceback.format_exc()
                )
        result.seconds = time.monotonic() - start
        results.append(result)
        print(f"gpu_check: {label}: {result.status} ({result.seconds:.0f} s) {result.numbers}", flush=True)
        write_summary(output, header, results, started)
    print(f"gpu_check: summary written to {output}", flush=True)
    return 1 if any(r.status == "failed" for r in results) else 0
