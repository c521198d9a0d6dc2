"""Task distillation: a fine-tuned teacher's softened outputs as extra training targets (Hinton et al. 2015).

    teacher: outputs/studies/mnli-what-pretraining-buys-cpu/minilm/seed{seed}   # a finished run folder, or any
    distill_alpha: 0.5          # model path with a head for the task; {seed} is the run's seed
    distill_temperature: 2.0
    distill_augment: 20000      # optional: that many more train examples, labelled by the teacher (Tang et al. 2019)

loss = (1 - alpha) * the model's own loss on the gold labels + alpha * T^2 * KL(teacher_T || student_T), where _T is
the softmax at temperature T. Classification distils the class logits; extractive QA the start and the end logits of
every window (the mean of the two, as the model's own QA loss), over the window's real tokens; regression (STS-B)
the score, by mean squared error to the teacher's score (no temperature).

The teacher runs once: its logits for the training features are cached in `distill_cache_dir` (default
<output_dir>/teacher_logits), keyed by a hash of the teacher (its path and the size and mtime of its config, weights
and tokenizer files) and of the tokenized features it read, so a resumed run, or another run over the same data
with the same teacher, reuses them ("reused" in the log). A classification teacher with another tokenizer reads the
raw examples tokenized its own way; QA windows depend on the tokenizer, so QA needs the student's tokenizer.

Augmented examples (`distill_augment`, classification and regression only) are made from train examples, never
from dev, by Tang et al.'s rules: each word masked with probability 0.1, then with probability 0.25 only a random
n-gram (n in 1..5) of the text kept (their part-of-speech-guided word swap needs a tagger and is left out). Their
label is the teacher's: its argmax (or score) for the gold-label term, its distribution for the KL term.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import torch
import torch.nn.functional as F
import transformers
from transformers import AutoTokenizer, DataCollatorWithPadding

from pipelines import model_loading, training
from pipelines.arguments import RecipeError
from pipelines.hub import ModelLoadError, load_pretrained, resolve_model_path, run_caveat
from pipelines.tasks.base import CLASSIFICATION, EXTRACTIVE_QA, REGRESSION

logger = logging.getLogger("pipelines")

TEACHER_COLUMN = "teacher_logits"
MASKED = -1.0e4  # a logit for padding: finite, so that 0 * log(0) terms stay 0, and exp() of it is 0
CACHE_FORMAT = 1  # change when what is cached changes, so that old caches are not read


@dataclass
class DistillationArguments:
    teacher: str | None = field(
        default=None,
        metadata={
            "help": "Distil from this teacher: a finished run folder, or any model folder or Hub id with a head "
            "for the task. {seed} is replaced by the run's seed (a study's teacher arm, same seed)."
        },
    )
    distill_alpha: float = field(
        default=0.5, metadata={"help": "Weight of the teacher term: (1-alpha) gold + alpha teacher."}
    )
    distill_temperature: float = field(
        default=2.0, metadata={"help": "Softmax temperature of both distributions (T^2 scales the KL)."}
    )
    distill_augment: int = field(
        default=0,
        metadata={
            "help": "Add this many examples made from train examples (masking, n-grams), labelled by the teacher."
        },
    )
    distill_augment_seed: int = field(default=0, metadata={"help": "Seed of the augmentation (independent of `seed`)."})
    distill_cache_dir: str | None = field(
        default=None, metadata={"help": "Where the teacher's logits are cached. Default: <output_dir>/teacher_logits."}
    )

    def __post_init__(self):
        if not 0.0 <= self.distill_alpha <= 1.0:
            raise RecipeError(f"distill_alpha is {self.distill_alpha}; it must be in [0, 1]")
        if not self.distill_temperature > 0:
            raise RecipeError(f"distill_temperature is {self.distill_temperature}; it must be positive")
        if self.distill_augment < 0:
            raise RecipeError(f"distill_augment is {self.distill_augment}; it must be 0 or more")
        if self.distill_augment and not self.teacher:
            raise RecipeError("distill_augment needs a teacher to label the new examples: set teacher")


@dataclass(frozen=True)
class Targets:
    """What the teacher's outputs are, for one kind of task."""

    outputs: tuple[str, ...]  # the model outputs distilled
    per_token: bool  # one logit per token (QA spans): padded per batch and masked by the attention mask
    soft: bool  # softmax distributions (KL); False: a regression score (MSE)


TARGETS = {
    CLASSIFICATION: Targets(("logits",), per_token=False, soft=True),
    REGRESSION: Targets(("logits",), per_token=False, soft=False),
    EXTRACTIVE_QA: Targets(("start_logits", "end_logits"), per_token=True, soft=True),
}


# --- The teacher --------------------------------------------------------------------------------------------


def teacher_path(args: DistillationArguments, seed: int) -> str:
    return resolve_model_path(args.teacher.replace("{seed}", str(seed)))


def load_teacher(args: DistillationArguments, path: str, task, model_args, max_seq_length: int):
    """(model, tokenizer, description) of the teacher at `path`; a folder that is not a model with a head for `task`
    is a RecipeError naming it."""
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
        "path": args.teacher,
        "resolved": str(Path(path).resolve()) if Path(path).exists() else path,
        "model": info.get("model", path),
        "task": info.get("task"),
        "parameters": model_loading.count_parameters(model),
        "alpha": args.distill_alpha,
        "temperature": args.distill_temperature,
        "augment": args.distill_augment,
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


def features_hash(features: datasets.Dataset, columns: list[str]) -> str:
    """sha256 of the token ids the teacher reads, row by row (the Arrow buffers: fast even for all of MNLI)."""
    digest = hashlib.sha256(f"{len(features)}:{','.join(columns)}".encode())
    table = features.select_columns(columns).with_format("arrow")[:]
    for name in columns:
        for chunk in table.column(name).chunks:
            digest.update(np.asarray(chunk.value_lengths()).tobytes())
            digest.update(np.asarray(chunk.flatten()).astype(np.int64).tobytes())
    return digest.hexdigest()


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


# --- Augmentation -------------------------------------------------------------------------------------------


def augment_text(text: str, rng: random.Random, mask_token: str, p_mask: float = 0.1, p_ngram: float = 0.25) -> str:
    """Tang et al. (2019): mask each word with probability p_mask; then with probability p_ngram keep one n-gram."""
    words = [mask_token if rng.random() < p_mask else word for word in text.split()]
    if words and rng.random() < p_ngram:
        n = min(rng.randint(1, 5), len(words))
        start = rng.randint(0, len(words) - n)
        words = words[start : start + n]
    return " ".join(words)


def augment_examples(
    train: datasets.Dataset, fields: tuple[str, ...], n: int, seed: int, mask_token: str
) -> datasets.Dataset:
    """n new examples made from random train examples; none is a train example itself or a repeat. Label 0 is a
    placeholder (the teacher labels them)."""
    rng = random.Random(seed)
    texts = list(zip(*(train[name] for name in fields)))
    seen = set(texts)
    made = []
    for _ in range(n * 50):  # short texts can run out of new variants: stop rather than loop for ever
        if len(made) == n:
            break
        new = tuple(augment_text(text, rng, mask_token) for text in texts[rng.randrange(len(texts))])
        if all(t.strip() for t in new) and new not in seen:
            seen.add(new)
            made.append(new)
    if len(made) < n:
        logger.warning(
            "distill_augment: made %d of %d new examples (the train texts have no more variants)", len(made), n
        )
    columns = {name: [example[i] for example in made] for i, name in enumerate(fields)}
    start = max(train["idx"]) + 1 if "idx" in train.column_names and len(train) else 0
    columns.update(idx=list(range(start, start + len(made))), label=[0] * len(made))
    return datasets.Dataset.from_dict(columns)


# --- The loss -----------------------------------------------------------------------------------------------


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, attention_mask, targets: Targets, temperature: float
) -> torch.Tensor:
    """T^2 * KL(teacher_T || student_T), averaged over rows (and over start and end for QA); regression: MSE."""
    student, teacher = student.float(), teacher.float()
    if not targets.soft:
        return F.mse_loss(student.reshape(-1), teacher.reshape(-1))
    if targets.per_token:
        padding = ~attention_mask.bool()[:, None, :]  # (B, 1, L): mask both sides' padding
        student, teacher = student.masked_fill(padding, MASKED), teacher.masked_fill(padding, MASKED)
    log_student = F.log_softmax(student / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher / temperature, dim=-1)
    kl = F.kl_div(log_student, log_teacher, log_target=True, reduction="none").sum(-1)
    return kl.mean() * temperature**2


class TeacherLogitsCollator:
    """The task's collator, plus the teacher's logits of the batch as one tensor (per-token ones padded)."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, rows):
        if not rows or TEACHER_COLUMN not in rows[0]:
            return self.collator(rows)  # evaluation batches carry no teacher logits
        teacher = [row.pop(TEACHER_COLUMN) for row in rows]
        batch = self.collator(rows)
        if np.ndim(teacher[0]) == 1:
            batch[TEACHER_COLUMN] = torch.tensor(teacher, dtype=torch.float32)
        else:
            length = batch["input_ids"].shape[-1]
            padded = torch.full((len(teacher), len(teacher[0]), length), MASKED)
            for b, value in enumerate(teacher):
                value = torch.tensor(value, dtype=torch.float32)
                padded[b, :, : value.shape[-1]] = value
            batch[TEACHER_COLUMN] = padded
        return batch


class DistillationTrainer(training.PipelineTrainer):
    """The project's Trainer with the mixed loss. Both terms are batch means, so the Trainer divides by the
    gradient accumulation steps as usual (loss_is_scaled_for_ga False; the model gets no num_items_in_batch)."""

    loss_is_scaled_for_ga = False

    def __init__(self, *args, targets: Targets, alpha: float, temperature: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.targets, self.alpha, self.temperature = targets, alpha, temperature

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if TEACHER_COLUMN not in self._signature_columns:
            self._signature_columns.append(TEACHER_COLUMN)  # else remove_unused_columns drops it

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        teacher = inputs.pop(TEACHER_COLUMN, None)
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True)
        if teacher is not None:
            student = torch.stack([outputs[name] for name in self.targets.outputs], dim=1)
            soft = distillation_loss(
                student, teacher.to(student.device), inputs.get("attention_mask"), self.targets, self.temperature
            )
            loss = (1 - self.alpha) * loss + self.alpha * soft
        return (loss, outputs) if return_outputs else loss


# --- In a run -----------------------------------------------------------------------------------------------


class Distillation:
    """A run's teacher: loaded before any output is written (a bad teacher fails early), labels the training
    data once the output folder is ready, and builds the Trainer with the mixed loss."""

    def __init__(self, args: DistillationArguments, run):
        self.args, self.run = args, run
        self.task = run.task
        self.targets = TARGETS[self.task.kind]
        if args.distill_augment and self.targets.per_token:
            raise RecipeError(
                f"distill_augment: teacher-labelled augmentation is for classification and regression; "
                f"{self.task.title} (extractive QA) distils on its own train windows only. "
                "Set distill_augment: 0"
            )
        path = teacher_path(args, run.training_args.seed)
        self.model, self.tokenizer, self.description = load_teacher(
            args, path, self.task, run.model_args, run.data_args.max_seq_length
        )
        self.fingerprint = teacher_fingerprint(path)
        self.description["caches"] = []

    @classmethod
    def for_run(cls, run) -> "Distillation | None":
        args = getattr(run, "distill_args", None)
        return cls(args, run) if args is not None and args.teacher else None

    def label_training_data(
        self, raw: datasets.DatasetDict, features: datasets.DatasetDict, tokenizer
    ) -> datasets.DatasetDict:
        """features["train"] with the teacher's logits, plus the augmented examples; the teacher is freed after."""
        shared = same_tokenizer(tokenizer, self.tokenizer)
        if self.targets.per_token and not shared:
            raise RecipeError(
                f"teacher: {self.description['path']} has another tokenizer than the student; "
                f"{self.task.title} distillation needs a shared tokenizer (its windows depend on it)"
            )
        if "train" not in features:
            raise RecipeError("teacher: distillation needs a train split")
        features = datasets.DatasetDict(features)
        train = self.with_teacher_logits(raw["train"], features["train"], shared)
        if self.args.distill_augment:
            mask_token = self.tokenizer.mask_token or tokenizer.mask_token or "[MASK]"
            extra_raw = augment_examples(
                raw["train"],
                self.task.input_fields,
                self.args.distill_augment,
                self.args.distill_augment_seed,
                mask_token,
            )
            extra = self.run.preprocess(datasets.DatasetDict(train=extra_raw), tokenizer)["train"]
            extra = self.with_teacher_logits(extra_raw, extra, shared)
            extra = teacher_labelled(extra, self.targets).cast(train.features)
            train = datasets.concatenate_datasets([train, extra])
            logger.info(
                "distill_augment: %d teacher-labelled examples added to %d train examples",
                len(extra),
                len(raw["train"]),
            )
            self.description["augmented_examples"] = len(extra)
        features["train"] = train
        self.model = None  # the teacher is not needed any more
        gc.collect()
        return features

    def with_teacher_logits(self, raw_split, student_features, shared: bool) -> datasets.Dataset:
        """student_features plus a teacher_logits column, from the cache or by running the teacher."""
        teacher_features = student_features
        if not shared:  # the teacher reads the same examples with its own tokenizer, row for row
            teacher_features = self.run.preprocess(datasets.DatasetDict(train=raw_split), self.tokenizer)["train"]
        columns = [c for c in self.tokenizer.model_input_names if c in teacher_features.column_names]
        key_parts = {
            "format": CACHE_FORMAT,
            "teacher": self.fingerprint,
            "outputs": self.targets.outputs,
            "features": features_hash(teacher_features, columns),
        }
        key = hashlib.sha256(json.dumps(key_parts).encode()).hexdigest()[:20]
        cache_root = Path(self.args.distill_cache_dir or Path(self.run.training_args.output_dir) / "teacher_logits")
        folder = cache_root / key
        args = self.run.training_args
        with args.main_process_first(desc="teacher logits"):
            reused = folder.is_dir()
            if not reused:
                logger.info("Running the teacher on %d examples (cache %s)", len(teacher_features), folder)
                rows = run_teacher(
                    self.model,
                    self.tokenizer,
                    teacher_features,
                    self.targets,
                    args.per_device_eval_batch_size,
                    args.device,
                )
                if args.process_index == 0:
                    meta = {
                        "teacher": self.description["path"],
                        "fingerprint": self.fingerprint,
                        "rows": len(rows),
                        "outputs": list(self.targets.outputs),
                    }
                    write_cache(folder, rows, self.targets, meta)
            else:
                logger.info("Teacher logits reused from %s", folder)
            logits = datasets.load_from_disk(str(folder))
        if len(logits) != len(student_features):
            raise RecipeError(
                f"teacher logits in {folder} have {len(logits)} rows, the train features {len(student_features)}"
            )
        self.description["caches"].append({"folder": str(folder), "rows": len(logits), "reused": reused})
        return datasets.concatenate_datasets([student_features.flatten_indices(), logits], axis=1)

    def make_trainer(self, info: dict, **trainer_kwargs) -> DistillationTrainer:
        trainer_kwargs["data_collator"] = TeacherLogitsCollator(trainer_kwargs["data_collator"])
        task_trainer = trainer_kwargs.pop("trainer_class", None)  # the task's own (QA: evaluate scores answers)
        trainer_class = (
            DistillationTrainer
            if task_trainer is None
            else type(f"Distillation{task_trainer.__name__}", (task_trainer, DistillationTrainer), {})
        )
        return training.make_trainer(
            info,
            trainer_class=trainer_class,
            targets=self.targets,
            alpha=self.args.distill_alpha,
            temperature=self.args.distill_temperature,
            **trainer_kwargs,
        )


def write_cache(folder: Path, rows: list, targets: Targets, meta: dict) -> None:
    """Written beside and renamed into place, so a killed run never leaves half a cache behind."""
    partial = folder.with_name(folder.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    value = datasets.List(datasets.Value("float32"))
    schema = datasets.Features({TEACHER_COLUMN: datasets.List(value) if targets.per_token else value})
    datasets.Dataset.from_dict({TEACHER_COLUMN: rows}, features=schema).save_to_disk(str(partial))
    (partial / "teacher.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, folder)


def teacher_labelled(features: datasets.Dataset, targets: Targets) -> datasets.Dataset:
    """Gold labels of examples only the teacher labelled: its argmax (classification) or its score (regression)."""
    logits = np.asarray(features[TEACHER_COLUMN], dtype=np.float32)
    labels = logits.argmax(-1).tolist() if targets.soft else logits[:, 0].tolist()
    return features.remove_columns("label").add_column("label", labels)
