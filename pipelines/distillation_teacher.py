"""The teacher of a distillation (pipelines/distillation.py): loading and checking it, what its outputs are for each
kind of task, running it over the training features, and the cache of its logits.

The cache is keyed by a hash of the teacher (its path and the size and mtime of its config, weights and tokenizer
files) and of the tokenized features it read; a cache folder is written beside its place and renamed into it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import torch
import transformers
from transformers import AutoTokenizer, DataCollatorWithPadding

from pipelines import model_loading
from pipelines.arguments import RecipeError
from pipelines.hub import ModelLoadError, load_pretrained, resolve_model_path, run_caveat
from pipelines.task_definitions.base import CLASSIFICATION, EXTRACTIVE_QA, REGRESSION

TEACHER_COLUMN = "teacher_logits"
# A logit or score for padding (teacher logits of shorter windows, masked keys of attention relations): finite, so
# that 0 * log(0) terms stay 0, and exp() of it is 0.
MASKED = -1.0e4
CACHE_FORMAT = 1  # change when what is cached changes, so that old caches are not read


@dataclass(frozen=True)
class Targets:
    """What the teacher's outputs are, for one kind of task."""

    outputs: tuple[str, ...]  # the model outputs distilled
    labels: tuple[str, ...]  # the gold-label columns of the features, one per output
    per_token: bool  # one logit per token (QA spans): padded per batch and masked by the attention mask
    soft: bool  # softmax distributions (KL); False: a regression score (MSE)


TARGETS = {
    CLASSIFICATION: Targets(("logits",), ("label",), per_token=False, soft=True),
    REGRESSION: Targets(("logits",), ("label",), per_token=False, soft=False),
    EXTRACTIVE_QA: Targets(
        ("start_logits", "end_logits"), ("start_positions", "end_positions"), per_token=True, soft=True
    ),
}


# --- The teacher --------------------------------------------------------------------------------------------


def teacher_path(teacher: str, seed: int) -> str:
    """The recipe's `teacher` for this seed ({seed} replaced), resolved like any model name."""
    return resolve_model_path(teacher.replace("{seed}", str(seed)))


def load_teacher(teacher: str, path: str, task, model_args, max_seq_length: int):
    """(model, tokenizer, description) of the teacher at `path` (the recipe's `teacher`, resolved); a folder that is
    not a model with a head for `task` is a RecipeError naming it."""
    looks_local = os.sep in path or path.startswith(".") or Path(path).exists()
    if looks_local and not Path(path).is_dir():
        raise RecipeError(
            f"teacher: {path} is not a folder (give a finished run folder, or a model folder with a {task.title} head)"
        )
    if looks_local and not (Path(path) / "config.json").is_file():
        raise RecipeError(
            f"teacher: {path} has no config.json, so it holds no model (a finished run folder holds "
            "config.json, the weights and the tokenizer)"
        )
    auto_class = getattr(transformers, task.auto_class)
    try:
        model, loading = load_pretrained(
            auto_class, path, what="teacher", output_loading_info=True, trust_remote_code=model_args.trust_remote_code
        )
        tokenizer = load_pretrained(
            AutoTokenizer, path, what="teacher's tokenizer", trust_remote_code=model_args.trust_remote_code
        )
    except ModelLoadError as error:
        raise RecipeError(f"teacher: {' '.join(str(error).split())}") from error
    missing = [key for key in loading.get("missing_keys", ()) if key]
    if missing:
        raise RecipeError(
            f"teacher: {path} has no trained head for {task.title} ({len(missing)} weights missing, e.g. "
            f"{sorted(missing)[0]}); give a model fine-tuned on the task, such as a finished run folder"
        )
    check_head(model.config, task, path)
    try:
        model_loading.check_model_fits(model, tokenizer, max_seq_length)
    except RecipeError as error:
        raise RecipeError(f"teacher {path}: {error}") from error
    info = read_run_info(Path(path))
    description = {
        "path": teacher,
        "resolved": str(Path(path).resolve()) if Path(path).exists() else path,
        "model": info.get("model", path),
        "task": info.get("task"),
        "parameters": model_loading.count_parameters(model),
    }
    caveat = run_caveat(info) if info else None
    if caveat:
        description["caveat"] = f"The teacher's caveat carries over to this student: {caveat}"
    return model, tokenizer, description


def read_run_info(folder: Path) -> dict:
    try:
        return json.loads((folder / "run_info.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def check_head(config, task, path: str) -> None:
    """The teacher's head gives what the student learns: as many outputs, and (classification) the same labels."""
    if config.num_labels != task.num_labels:
        raise RecipeError(
            f"teacher: {path} has a head with {config.num_labels} outputs; {task.title} needs {task.num_labels}"
        )
    if task.kind == CLASSIFICATION:
        names = [str(config.id2label[i]).lower() for i in range(config.num_labels)]
        generic = all(name == f"label_{i}" for i, name in enumerate(names))
        if not generic and names != [name.lower() for name in task.label_names]:
            raise RecipeError(
                f"teacher: {path} has the labels {', '.join(names)}; {task.title}'s are "
                f"{', '.join(task.label_names)} (in this order)"
            )


def same_tokenizer(a, b) -> bool:
    """Two tokenizers that cut every text into the same ids (their whole pipeline, vocabulary included)."""
    if not (getattr(a, "is_fast", False) and getattr(b, "is_fast", False)):
        return a.get_vocab() == b.get_vocab() and type(a) is type(b)
    states = []
    for tokenizer in (a, b):
        state = json.loads(tokenizer.backend_tokenizer.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        states.append(state)
    return states[0] == states[1]


# --- The cache ----------------------------------------------------------------------------------------------


def teacher_fingerprint(path: str) -> dict:
    """The teacher's path, and name, size and mtime of the files that make it (a retrained teacher changes it)."""
    folder = Path(path)
    if not folder.is_dir():
        return {"path": path}
    suffixes = (".json", ".safetensors", ".bin", ".txt", ".model")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in suffixes)
    return {"path": str(folder.resolve()), "files": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]}


def cache_key(fingerprint: dict, targets: Targets, features: datasets.Dataset, columns: list[str]) -> str:
    """The cache folder's name: the teacher, what it outputs, and the features it reads."""
    parts = {
        "format": CACHE_FORMAT,
        "teacher": fingerprint,
        "outputs": targets.outputs,
        "features": features_hash(features, columns),
    }
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]


def features_hash(features: datasets.Dataset, columns: list[str]) -> str:
    """sha256 of the token ids the teacher reads, row by row (the Arrow buffers: fast even for all of MNLI)."""
    digest = hashlib.sha256(f"{len(features)}:{','.join(columns)}".encode())
    table = features.select_columns(columns).with_format("arrow")[:]
    for name in columns:
        for chunk in table.column(name).chunks:
            digest.update(np.asarray(chunk.value_lengths()).tobytes())
            digest.update(np.asarray(chunk.flatten()).astype(np.int64).tobytes())
    return digest.hexdigest()


def write_cache(folder: Path, rows: list, targets: Targets, meta: dict) -> None:
    """Written beside and renamed into place, so a killed run never leaves half a cache behind."""
    partial = folder.with_name(folder.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    value = datasets.List(datasets.Value("float32"))
    schema = datasets.Features({TEACHER_COLUMN: datasets.List(value) if targets.per_token else value})
    datasets.Dataset.from_dict({TEACHER_COLUMN: rows}, features=schema).save_to_disk(str(partial))
    (partial / "teacher.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, folder)


# --- Running the teacher ------------------------------------------------------------------------------------


def run_teacher(model, tokenizer, features: datasets.Dataset, targets: Targets, batch_size: int, device) -> list:
    """The teacher's logits for every row of `features`: [classes] per row, or [[start], [end]] per window."""
    columns = [c for c in tokenizer.model_input_names if c in features.column_names]
    lengths = [len(ids) for ids in features["input_ids"]]
    order = np.argsort(lengths, kind="stable")  # batches of similar length barely pad
    collator = DataCollatorWithPadding(tokenizer)
    rows: list = [None] * len(features)
    model.to(device).eval()
    inputs = features.select_columns(columns)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size].tolist()
            batch = inputs.select(indices)[:]
            batch = collator([{c: batch[c][i] for c in columns} for i in range(len(indices))])
            outputs = model(**{k: v.to(device) for k, v in batch.items()})
            logits = torch.stack([outputs[name].float() for name in targets.outputs], dim=1).cpu()  # (B, K, C or L)
            for b, row in enumerate(indices):
                value = logits[b, :, : lengths[row]] if targets.per_token else logits[b, 0]
                rows[row] = value.tolist()
    return rows
