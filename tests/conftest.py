"""Shared fixtures: the staged data folder, the offline MiniLM model, a tiny BERT checkpoint, and a clean env."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# A one-layer small-3l-4h with MiniLM's tokenizer: the cheapest scratch model a run can train (command-line form).
ONE_LAYER_SCRATCH = [
    "--scratch_preset",
    "small-3l-4h",
    "--tokenizer_name",
    "minilm",
    "--config_overrides",
    "num_hidden_layers=1",
]
# Tests never reach for the Hub: what they need is local (and CI has no network anyway).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Under pytest-xdist (`make test` runs 2 workers on 2 cores) each worker and every run it starts use one thread: two
# workers of 2 threads each would fight over the cores. Set before torch is imported, and inherited by subprocesses.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def shared_data_dir() -> Path:
    return Path(os.environ.get("PIPELINES_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = shared_data_dir()
    if not (path / "mnli").is_dir():
        pytest.skip(
            f"shared data not found at {path} (set PIPELINES_DATA_DIR to the folder described in shared/data/README.md)"
        )
    return path


@pytest.fixture(scope="session")
def minilm_path() -> str:
    from pipelines.hub import resolve_model_path

    return resolve_model_path("minilm")


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, minilm_path) -> Path:
    """A randomly initialised 2-layer BERT with the MiniLM tokenizer: a real checkpoint folder, seconds to train."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=3,
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def subprocess_env(**extra) -> dict:
    """Environment for launched runs: no W&B credentials (so runs go offline), repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update({"PYTHONPATH": str(REPO), "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1", **extra})
    return env


def launch_command(
    script: str, recipe: Path, *overrides: str, config_file: str = "configs/accelerate_cpu.yaml"
) -> list[str]:
    accelerate = str(Path(sys.executable).parent / "accelerate")
    return [accelerate, "launch", "--config_file", str(REPO / config_file), str(REPO / script), str(recipe), *overrides]


def script_command(script: str, recipe: Path, *overrides: str) -> list[str]:
    """`python script recipe`: the same run as launch_command's with one interpreter start less (~4 s), for tests
    whose point is not the launcher."""
    return [sys.executable, str(REPO / script), str(recipe), *overrides]


def write_tiny_mnli(folder: Path, data_dir: Path, n_train: int = 40, n_dev: int = 8) -> Path:
    """The first rows of the staged MNLI splits, as a data_dir for runs that take seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("validation_matched", n_dev), ("validation_mismatched", n_dev)):
        lines = (data_dir / "mnli" / f"{split}.jsonl").read_text().splitlines()[:n]
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def complete_checkpoint(job_dir: Path, step: int) -> bool:
    """A checkpoint the pipeline would resume from: trainer_state.json written in full for that step."""
    state = job_dir / f"checkpoint-{step}" / "trainer_state.json"
    try:
        return json.loads(state.read_text())["global_step"] == step
    except (OSError, ValueError, KeyError):
        return False
