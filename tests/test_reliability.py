"""Runs survive faults: resume after SIGKILL, half-written checkpoints, NaN losses, W&B failures, leaked tokens,
and a 2-process DDP launch on CPU."""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, launch_command, script_command, subprocess_env

FAKE_HF_TOKEN = "hf_" + "Zq7Lx2Vb9Nm4Kp8Rt3Wy6Ud1Se5Af0GhJc"
FAKE_WANDB_KEY = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def small_mnli(tmp_path_factory, data_dir) -> Path:
    folder = tmp_path_factory.mktemp("mnli-small")
    for split, n in (("train", 96), ("validation_matched", 48), ("validation_mismatched", 48)):
        lines = (data_dir / "mnli" / f"{split}.jsonl").read_text().splitlines()[:n]
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def write_recipe(path: Path, tiny_bert_dir, small_mnli, output_dir, **extra) -> Path:
    recipe = {
        "model_name_or_path": str(tiny_bert_dir),
        "data_dir": str(small_mnli),
        "max_seq_length": 64,
        "output_dir": str(output_dir),
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 16,
        "learning_rate": 1e-3,
        "logging_steps": 2,
        "seed": 11,
        "max_steps": 12,
    }
    recipe.update(extra)
    path.write_text(yaml.safe_dump(recipe))
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(cmd, cwd, env=None, timeout=600):
    result = subprocess.run(cmd, cwd=cwd, env=env or subprocess_env(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_same_metrics(tmp_path, tiny_bert_dir, small_mnli):
    common = {"save_strategy": "steps", "save_steps": 4, "resume_from_checkpoint": "auto", "dataloader_num_workers": 0}
    straight = write_recipe(tmp_path / "straight.yaml", tiny_bert_dir, small_mnli, tmp_path / "straight", **common)
    run(script_command("scripts/run_mnli.py", straight), tmp_path)
    expected = json.loads((tmp_path / "straight" / "all_results.json").read_text())

    killed_dir = tmp_path / "killed"
    killed = write_recipe(tmp_path / "killed.yaml", tiny_bert_dir, small_mnli, killed_dir, **common)
    # Slow the steps down a little so the kill lands between checkpoint 4 and the end.
    process = subprocess.Popen(
        script_command("scripts/run_mnli.py", killed),
        cwd=tmp_path,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while not (killed_dir / "checkpoint-4" / "trainer_state.json").exists():
        assert process.poll() is None and time.time() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed_dir / "all_results.json").exists()

    result = run(script_command("scripts/run_mnli.py", killed), tmp_path)
    assert "Resuming from" in result.stdout + result.stderr
    resumed = json.loads((killed_dir / "all_results.json").read_text())
    for key in ("eval_matched_accuracy", "eval_mismatched_accuracy", "eval_matched_loss", "eval_mismatched_loss"):
        assert resumed[key] == pytest.approx(expected[key], abs=1e-5), key


def test_half_written_checkpoint_is_never_picked(tmp_path):
    from transformers import TrainingArguments

    from pipelines.checkpoints import resolve_resume_checkpoint

    good = tmp_path / "checkpoint-4"
    good.mkdir()
    (good / "trainer_state.json").write_text(json.dumps({"global_step": 4}))
    half = tmp_path / "checkpoint-8"  # killed while writing trainer_state.json
    half.mkdir()
    (half / "trainer_state.json").write_text('{"global_st')
    empty = tmp_path / "checkpoint-12"  # killed before trainer_state.json
    empty.mkdir()
    (empty / "model.safetensors").write_bytes(b"")
    args = TrainingArguments(output_dir=str(tmp_path), resume_from_checkpoint="auto", use_cpu=True, report_to=[])
    assert resolve_resume_checkpoint(args) == str(good)
    fresh = TrainingArguments(
        output_dir=str(tmp_path / "new"), resume_from_checkpoint="auto", use_cpu=True, report_to=[]
    )
    assert resolve_resume_checkpoint(fresh) is None


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path, tiny_bert_dir):
    import datasets
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainingArguments

    from pipelines.training import NonFiniteLossError, PipelineTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir)
    encoded = tokenizer(["a short premise"] * 64, ["a hypothesis"] * 64)
    train = datasets.Dataset.from_dict({**encoded, "label": [0, 1, 2, 1] * 16})
    args = TrainingArguments(
        output_dir=str(tmp_path),
        use_cpu=True,
        report_to=[],
        max_steps=10,
        save_strategy="steps",
        save_steps=3,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        logging_steps=1,
    )

    # The real model, whose loss turns NaN at the 6th step, as after a blow-up.
    poisoned = {"calls": 0}
    original_forward = model.forward

    @functools.wraps(original_forward)  # keeps the signature the Trainer reads to pick input columns
    def forward(*a, **k):
        output = original_forward(*a, **k)
        poisoned["calls"] += 1
        if poisoned["calls"] == 6:
            output.loss = output.loss * float("nan")
        return output

    model.forward = forward
    trainer = PipelineTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
    with pytest.raises(NonFiniteLossError) as error:
        trainer.train()
    message = str(error.value)
    assert "at step 6" in message and "checkpoint-3" in message
    assert (tmp_path / "checkpoint-3" / "trainer_state.json").exists()
    assert not (tmp_path / "checkpoint-6").exists()


@pytest.mark.slow
def test_wandb_failures_never_stop_training(tmp_path, tiny_bert_dir, small_mnli):
    # Online mode with a key the server would reject, and no server to reach: wandb.init fails.
    recipe = write_recipe(
        tmp_path / "r.yaml", tiny_bert_dir, small_mnli, tmp_path / "out", report_to="wandb", max_steps=4
    )
    env = subprocess_env(
        WANDB_MODE="online",
        WANDB_API_KEY=FAKE_WANDB_KEY,
        WANDB_BASE_URL="http://127.0.0.1:9",
        WANDB_INIT_TIMEOUT="5",  # nothing answers at that address: waiting longer changes nothing
        WANDB__SERVICE_WAIT="20",
    )
    result = run(script_command("scripts/run_mnli.py", recipe), tmp_path, env=env)
    assert "W&B failed" in result.stdout + result.stderr
    assert "eval_matched_accuracy" in json.loads((tmp_path / "out" / "all_results.json").read_text())


def test_wandb_process_crash_mid_run(tmp_path, tiny_bert_dir):
    """Kill the wandb-core service halfway through training: the run still finishes and writes its results."""
    import datasets
    import psutil
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback, TrainingArguments

    from pipelines import tracking
    from pipelines.arguments import TrackingArguments
    from pipelines.run_outputs import finish_run
    from pipelines.training import make_trainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir)
    encoded = tokenizer(["a short premise"] * 48, ["a hypothesis"] * 48)
    train = datasets.Dataset.from_dict({**encoded, "label": [0, 1, 2] * 16})
    args = TrainingArguments(
        output_dir=str(tmp_path),
        use_cpu=True,
        report_to=["wandb"],
        max_steps=8,
        per_device_train_batch_size=4,
        logging_steps=1,
        run_name="crash",
    )
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("WANDB_")}
    try:
        tracking.setup_wandb(TrackingArguments(wandb_mode="offline"), args)

        class KillWandbAtStep4(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step == 4:
                    for child in psutil.Process().children(recursive=True):
                        if "wandb" in " ".join(child.cmdline()):
                            child.kill()

        trainer = make_trainer(
            {"task": "test"}, model=model, args=args, train_dataset=train, processing_class=tokenizer
        )
        trainer.add_callback(KillWandbAtStep4())
        result = trainer.train()
        finish_run(trainer, dict(result.metrics))
    finally:
        import wandb

        try:  # the killed service cannot be told to shut down; do not let that surface at interpreter exit
            wandb.teardown()
        except Exception:
            pass
        for key in [k for k in os.environ if k.startswith("WANDB_")]:
            del os.environ[key]
        os.environ.update(saved)
    assert trainer.state.global_step == 8
    assert json.loads((tmp_path / "all_results.json").read_text())["train_loss"] > 0


@pytest.mark.slow
def test_tokens_never_reach_output_files(tmp_path, tiny_bert_dir, small_mnli):
    recipe = write_recipe(
        tmp_path / "r.yaml",
        tiny_bert_dir,
        small_mnli,
        tmp_path / "out",
        report_to="wandb",
        max_steps=4,
        save_strategy="steps",
        save_steps=2,
    )
    env = subprocess_env(HF_TOKEN=FAKE_HF_TOKEN, WANDB_API_KEY=FAKE_WANDB_KEY, WANDB_MODE="offline")
    result = run(script_command("scripts/run_mnli.py", recipe, "--hub_token", FAKE_HF_TOKEN), tmp_path, env=env)
    for secret in (FAKE_HF_TOKEN, FAKE_WANDB_KEY):
        assert secret not in result.stdout + result.stderr
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files) and any(p.name == "recipe.yaml" for p in files)
    for path in files:
        content = path.read_bytes()
        for secret in (FAKE_HF_TOKEN, FAKE_WANDB_KEY):
            assert secret.encode() not in content, f"{secret[:6]}... found in {path}"
    # Weights are safetensors, and no pickled training arguments are left behind.
    assert not [p for p in files if p.suffix in (".bin",) or p.name == "pytorch_model.bin"]
    assert (tmp_path / "out" / "model.safetensors").exists()


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tmp_path, tiny_bert_dir, small_mnli):
    """2 gloo processes: one W&B run, one output folder written by rank 0, the loss not doubled, metrics like 1
    process."""
    from pipelines.tasks import mnli

    single = write_recipe(
        tmp_path / "single.yaml",
        tiny_bert_dir,
        small_mnli,
        tmp_path / "single",
        report_to="none",
        per_device_train_batch_size=8,
        max_steps=6,
    )
    mnli.main([str(single)])  # the reference, in-process: only its numbers are compared
    # Same global batch (2 x 4) and steps as the single-process run.
    ddp = write_recipe(
        tmp_path / "ddp.yaml",
        tiny_bert_dir,
        small_mnli,
        tmp_path / "ddp",
        report_to="wandb",
        per_device_train_batch_size=4,
        max_steps=6,
    )
    command = launch_command("scripts/run_mnli.py", ddp, config_file="configs/accelerate_cpu_ddp.yaml")
    # A free port rather than the config's: gpu_check's DDP check may run at the same time (pytest -n 2).
    command[4:4] = ["--main_process_port", str(free_port())]
    run(command, tmp_path)

    from pipelines.tracking import find_offline_runs, read_offline_run

    assert len(find_offline_runs(tmp_path / "ddp")) == 1
    single_results = json.loads((tmp_path / "single" / "all_results.json").read_text())
    ddp_results = json.loads((tmp_path / "ddp" / "all_results.json").read_text())
    assert json.loads((tmp_path / "ddp" / "run_info.json").read_text())["world_size"] == 2
    # Every eval example counted exactly once across the two processes.
    assert sum(map(sum, ddp_results["eval_matched_confusion_matrix"])) == 48
    predictions = (tmp_path / "ddp" / "predictions_validation_matched.jsonl").read_text().splitlines()
    assert [json.loads(line)["idx"] for line in predictions] == list(range(48))
    # The logged loss is an average, not a sum over processes (average_tokens_across_devices trap).
    single_loss = single_results["train_loss"]
    assert 0.7 * single_loss < ddp_results["train_loss"] < 1.3 * single_loss
    run_log = read_offline_run(find_offline_runs(tmp_path / "ddp")[0])
    first_loss = [row["train/loss"] for row in run_log["history"] if "train/loss" in row][0]
    assert first_loss < 1.5  # ~ln(3) = 1.10 for a fresh 3-way classifier; a doubled loss would be ~2.2
    assert abs(ddp_results["eval_matched_loss"] - single_results["eval_matched_loss"]) < 0.1


def test_launch_configs_load_and_name_their_command():
    """Every accelerate config parses with accelerate's own loader and starts with its launch command."""
    from accelerate.commands.config.config_args import load_config_from_file

    configs = [REPO / "accelerate_config.yaml", *sorted((REPO / "configs").glob("accelerate_*.yaml"))]
    assert {p.name for p in configs} >= {
        "accelerate_config.yaml",
        "accelerate_cpu.yaml",
        "accelerate_cpu_ddp.yaml",
        "accelerate_fsdp.yaml",
        "accelerate_deepspeed.yaml",
    }
    for path in configs:
        config = load_config_from_file(str(path))
        header = "\n".join(path.read_text().splitlines()[:3])
        assert "accelerate launch --config_file" in header and path.name in header, path
        # The single-machine configs leave precision to the recipe (precision: auto); the multi-GPU sharded ones ask
        # for bf16 (the launcher's bf16 wins over auto, and the run says so).
        expected = "bf16" if path.name in ("accelerate_fsdp.yaml", "accelerate_deepspeed.yaml") else "no"
        assert config.mixed_precision == expected, path
    assert load_config_from_file(str(REPO / "configs" / "accelerate_fsdp.yaml")).fsdp_config["fsdp_version"] == 2
    assert (
        load_config_from_file(str(REPO / "configs" / "accelerate_deepspeed.yaml")).deepspeed_config["zero_stage"] == 2
    )
