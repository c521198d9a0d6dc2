"""Precision choice (pipelines/precision.py): auto on each kind of hardware, explicit choices, launcher vs recipe.

The AVX2-only CPU is simulated on any x86 machine by capping torch's and oneDNN's instruction sets in a subprocess
(ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2): bf16 is then really emulated and really slow there.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import REPO, launch_command, subprocess_env
from transformers import TrainingArguments

from pipelines import precision
from pipelines.arguments import ModelArguments, RecipeError, TrackingArguments, parse_recipe
from pipelines.tasks.mnli import MnliDataArguments

AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def cpu(native: bool, bf16_gflops: float) -> precision.Hardware:
    return precision.Hardware(
        "cpu", "AVX512" if native else "AVX2", native, "test CPU", matmul_gflops={"fp32": 40.0, "bf16": bf16_gflops}
    )


def gpu(native: bool) -> precision.Hardware:
    return precision.Hardware("Some GPU", "AVX2", native, "test GPU", gpu_compute_capability="8.0" if native else "7.0")


@pytest.mark.parametrize(
    "hardware, expected",
    [
        (cpu(native=True, bf16_gflops=80.0), "bf16"),
        (cpu(native=False, bf16_gflops=0.8), "fp32"),
        (gpu(native=True), "bf16"),
        (gpu(native=False), "fp16"),  # with loss scaling: accelerate's GradScaler for fp16
    ],
)
def test_auto_picks_what_the_hardware_computes_natively(hardware, expected):
    choice = precision.choose("auto", None, hardware)
    assert (choice.precision, choice.source, choice.warning) == (expected, "auto", None)
    assert choice.mixed_precision == ("no" if expected == "fp32" else expected)


def test_explicit_bf16_on_an_emulating_cpu_is_honoured_with_one_warning_naming_capability_and_slowdown():
    choice = precision.choose("bf16", None, cpu(native=False, bf16_gflops=0.8))
    assert choice.precision == "bf16" and choice.source == "recipe"
    assert "AVX2" in choice.warning and "50x slower than fp32" in choice.warning
    assert precision.choose("bf16", None, cpu(native=True, bf16_gflops=80.0)).warning is None
    assert "emulated" in precision.choose("bf16", None, gpu(native=False)).warning


def test_launcher_and_recipe_never_override_each_other_silently():
    hardware = cpu(native=False, bf16_gflops=0.8)
    launcher_wins = precision.choose("auto", "bf16", hardware)  # recipe auto: the launcher's explicit bf16 wins
    assert (
        launcher_wins.precision == "bf16"
        and launcher_wins.source == "launcher"
        and "accelerate launch" in launcher_wins.reason
    )
    recipe_wins = precision.choose("fp32", "bf16", hardware)  # the recipe's explicit choice wins, and says so
    assert recipe_wins.precision == "fp32" and "wins over accelerate launch's bf16" in recipe_wins.reason
    # accelerate writes 'no' for a launch config without mixed precision too: auto decides and the line says so
    unset = precision.choose("auto", "no", cpu(native=True, bf16_gflops=80.0))
    assert unset.precision == "bf16" and "counts as not set" in unset.reason


def test_recipe_keys_bf16_fp16_and_precision():
    assert precision.requested_precision({}) == "auto"
    assert precision.requested_precision({"bf16": True}) == "bf16"
    assert precision.requested_precision({"fp16": True}) == "fp16"
    assert precision.requested_precision({"bf16": False}) == "fp32"  # the reference recipe's explicit fp32
    assert precision.requested_precision({"bf16": True, "precision": "bf16"}, "bf16") == "bf16"
    with pytest.raises(RecipeError, match="precision: fp32 disagrees with bf16: true"):
        precision.requested_precision({"bf16": True, "precision": "fp32"}, "fp32")
    with pytest.raises(RecipeError, match="precision: 'half' is not one of"):
        precision.requested_precision({"precision": "half"}, "half")


def test_parsing_reads_the_recipe_and_apply_sets_the_choice_on_training_arguments(tmp_path, capsys):
    """Parsing a recipe probes no hardware and prints nothing; the run sequence (TaskRun.run) applies the choice."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {"model_name_or_path": "minilm", "output_dir": str(tmp_path / "out"), "precision": "fp32", "bf16": True}
        )
    )
    types = (ModelArguments, MnliDataArguments, TrackingArguments, TrainingArguments)
    model_args, _, _, training_args, resolved = parse_recipe(types, [str(recipe), "--bf16", "false"])
    assert capsys.readouterr().out == "" and not hasattr(training_args, "precision_choice")
    precision.apply(model_args.precision, resolved, training_args)
    assert (training_args.bf16, training_args.fp16, training_args.mixed_precision) == (False, False, "no")
    assert training_args.precision_choice.source == "recipe"
    assert "Precision: fp32 (recipe" in capsys.readouterr().out


def run_python(code: str, **env) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=subprocess_env(**env), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_auto_on_this_machine_and_on_a_simulated_avx2_only_cpu():
    """Capped to AVX2, auto picks fp32 (bf16 is emulated there); uncapped, it follows torch's own CPU queries."""
    code = (
        "from pipelines import precision; h = precision.detect_hardware(use_cpu=True); "
        "print(precision.choose('auto', None, h).line()); print(precision.slowdown(h, 'bf16'))"
    )
    capped = run_python(code, **AVX2_ONLY).splitlines()
    assert (
        capped[0].startswith("Precision: fp32 (auto: no native bf16 on this CPU")
        and "CPU capability: AVX2." in capped[0]
    )
    assert float(capped[1]) > 5  # bf16 really is emulated there: measured ~150x slower than fp32 on an AMX CPU

    native = torch.backends.cpu.get_cpu_capability().startswith("AVX512") and (
        torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    )
    assert run_python(code).startswith(f"Precision: {'bf16' if native else 'fp32'} (auto")


@pytest.mark.slow
def test_three_step_run_records_the_precision(tmp_path, data_dir, tiny_bert_dir):
    """A real `accelerate launch` on a simulated AVX2-only CPU: auto runs fp32 and says why, in the log and run_info."""
    output_dir = tmp_path / "run"
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "model_name_or_path": str(tiny_bert_dir),
                "data_dir": str(data_dir / "mnli"),
                "max_seq_length": 64,
                "max_train_samples": 48,
                "max_eval_samples": 16,
                "output_dir": str(output_dir),
                "max_steps": 3,
                "per_device_train_batch_size": 16,
                "per_device_eval_batch_size": 16,
                "report_to": "none",
            }
        )
    )
    result = subprocess.run(
        launch_command("scripts/run_mnli.py", recipe),
        cwd=tmp_path,
        env=subprocess_env(**AVX2_ONLY),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Precision: fp32 (auto: no native bf16 on this CPU" in result.stdout
    info = json.loads((output_dir / "run_info.json").read_text())
    assert info["mixed_precision"] == "no"
    assert info["precision"]["precision"] == "fp32" and info["precision"]["source"] == "auto"
    assert info["precision"]["hardware"]["cpu_capability"] == "AVX2"
    assert info["precision"]["launcher"] == "no"  # configs/accelerate_cpu.yaml leaves precision to the recipe


def test_bare_run_mnli_runs_the_default_recipe_and_names_the_offline_one(tmp_path):
    """`accelerate launch scripts/run_mnli.py` with no recipe: DistilBERT on MNLI from the Hub at the machine's
    precision; offline, one line names the CPU recipe instead of a recipe error."""
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "run_mnli.py")],
        cwd=tmp_path,
        env=subprocess_env(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert "running the default recipe configs/mnli/distilbert.yaml" in result.stdout
    assert "Precision: " in result.stdout and "(auto" in result.stdout
    errors = [line for line in result.stderr.splitlines() if not line.startswith(" ") and "Warning" not in line]
    assert errors[0].startswith("error: Could not load"), result.stderr
    assert errors[1] == (
        "The Hub cannot be reached; the offline CPU recipe is: accelerate launch --config_file "
        "configs/accelerate_cpu.yaml scripts/run_mnli.py configs/mnli/minilm_cpu.yaml"
    )
    assert not (tmp_path / "outputs").exists()  # nothing written before the failure
