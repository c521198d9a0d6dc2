"""What the GPU check (pipelines/gpu_check.py) runs on: its size profiles, a random DistilBERT-shaped model, the MNLI
and SQuAD inputs (staged data, else made-up pairs and the tiny SQuAD fixture), and the project's own recipes with
the check's changes."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipelines.check_processes import REPO


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
