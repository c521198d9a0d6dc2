"""Task distillation: a fine-tuned teacher's softened outputs as extra training targets (Hinton et al. 2015).

    teacher: outputs/studies/mnli-what-pretraining-buys-cpu/minilm/seed{seed}   # a finished run folder, or any
    distill_alpha: 0.5          # model path with a head for the task; {seed} is the run's seed
    distill_temperature: 2.0
    distill_augment: 20000      # optional: that many more train examples, labelled by the teacher (Tang et al. 2019)
    distill_transfer: 16000     # optional: the train file's next examples after max_train_samples, teacher-labelled
    distill_relations: 1.0      # optional: the last layers' attention relations (MiniLMv2, distillation_relations.py)

loss = (1 - alpha) * the model's own loss on the gold labels + alpha * T^2 * KL(teacher_T || student_T), where _T is
the softmax at temperature T. Classification distils the class logits; extractive QA the start and the end logits of
every window (the mean of the two, as the model's own QA loss), over the window's real tokens; regression (STS-B)
the score, by mean squared error to the teacher's score (no temperature).

The teacher runs once: its logits for the training features are cached in `distill_cache_dir` (default
<output_dir>/teacher_logits), keyed by a hash of the teacher (its path and the size and mtime of its config, weights
and tokenizer files) and of the tokenized features it read, so a resumed run, or another run over the same data
with the same teacher, reuses them ("reused" in the log). A classification teacher with another tokenizer reads the
raw examples tokenized its own way; QA windows depend on the tokenizer, so QA needs the student's tokenizer.

Augmented examples (`distill_augment`) are made from train examples, never from dev, by Tang et al.'s rules
(distillation_augment.py): each word masked with probability 0.1, or, with `distill_augment_swap`, swapped for one of
its nearest words in the teacher's input embeddings (TinyBERT's swap); then with probability 0.25 only a random n-gram
(n in 1..5) of the text kept. Classification rewrites every input text; QA the question only, so that the context
still holds the span the teacher points to. Their label is the teacher's: its argmax (QA: its start and end token
of each window) or score for the gold-label term, its distribution for the KL term.

A transfer set (`distill_transfer`, Hinton et al.'s unlabelled "transfer set") is real train examples instead: the
train file's next examples after the first max_train_samples, read like them and labelled by the teacher in the same
way; their own labels are never used. The student then sees more of the task's real inputs than a scratch run with
the same max_train_samples, but no more human labels.

Loading, checking, running and caching the teacher is in distillation_teacher.py; the augmentation rules in
distillation_augment.py; here are the recipe's arguments, the loss, the Trainer that mixes it in, and the
Distillation object a run uses.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import torch
import torch.nn.functional as F

from pipelines import training
from pipelines.arguments import RecipeError
from pipelines.distillation_augment import augment_examples, word_neighbours, word_parts
from pipelines.distillation_init import project_teacher_embeddings
from pipelines.distillation_relations import RelationDistillation
from pipelines.distillation_teacher import (
    MASKED,
    TARGETS,
    TEACHER_COLUMN,
    Targets,
    cache_key,
    load_teacher,
    run_teacher,
    same_tokenizer,
    teacher_fingerprint,
    teacher_path,
    write_cache,
)

logger = logging.getLogger("pipelines")


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
    distill_transfer: int = field(
        default=0,
        metadata={
            "help": "Add the train split's next this many examples after the first max_train_samples, labelled by the "
            "teacher only (their own labels are not used): a transfer set of real task inputs."
        },
    )
    distill_augment_swap: float = field(
        default=0.0,
        metadata={
            "help": "Probability that a word of an augmented example is swapped for one of its 15 nearest words in the "
            "teacher's input embeddings (TinyBERT's swap; Tang et al. swap words of the same part of speech at 0.1). "
            "0: masking and n-grams only."
        },
    )
    distill_init_embeddings: bool = field(
        default=False,
        metadata={
            "help": "Start a scratch student's word, position and segment embeddings from the teacher's, projected "
            "onto the student's width by their top principal directions (distillation_init.py). Needs the "
            "teacher's tokenizer."
        },
    )
    distill_relations: float = field(
        default=0.0,
        metadata={
            "help": "Weight of MiniLMv2's self-attention relation term (distillation_relations.py): the student's "
            "last attention layer learns the teacher's query, key and value relations. Needs the teacher's "
            "tokenizer; the teacher then runs beside the student at every step. 0: off."
        },
    )
    distill_relation_heads: int = field(
        default=8, metadata={"help": "Relation heads; must divide the student's and the teacher's width."}
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
        if self.distill_transfer < 0:
            raise RecipeError(f"distill_transfer is {self.distill_transfer}; it must be 0 or more")
        if self.distill_transfer and not self.teacher:
            raise RecipeError("distill_transfer needs a teacher to label the transfer set: set teacher")
        if not 0.0 <= self.distill_augment_swap <= 0.9:  # 0.1 of the words are masked: the two add up to 1 at most
            raise RecipeError(f"distill_augment_swap is {self.distill_augment_swap}; it must be in [0, 0.9]")
        if self.distill_augment_swap and not self.distill_augment:
            raise RecipeError("distill_augment_swap swaps words of augmented examples: set distill_augment too")
        if self.distill_relations < 0:
            raise RecipeError(f"distill_relations is {self.distill_relations}; it must be 0 or more")
        if self.distill_relation_heads < 1:
            raise RecipeError(f"distill_relation_heads is {self.distill_relation_heads}; it must be at least 1")


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

    def __init__(
        self,
        *args,
        targets: Targets,
        alpha: float,
        temperature: float,
        relations: RelationDistillation | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.targets, self.alpha, self.temperature, self.relations = targets, alpha, temperature, relations
        if relations is not None:
            relations.model.to(self.args.device)  # once: the teacher then runs beside the student at every step

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
        if self.relations is not None and model.training:
            loss = loss + self.relations.term(inputs)
        return (loss, outputs) if return_outputs else loss


# --- In a run -----------------------------------------------------------------------------------------------


def load_data_with_transfer_set(run) -> tuple[datasets.DatasetDict, datasets.Dataset | None]:
    """run.load_data(), and with `distill_transfer` the train split's next that many examples after the first
    max_train_samples: the task reads them as train examples (its own first-N rule, after any held-out split), and
    they are split off here so that their labels never reach the student (label_training_data)."""
    args = getattr(run, "distill_args", None)
    transfer = args.distill_transfer if args is not None else 0
    if not transfer:
        return run.load_data(), None
    gold = run.data_args.max_train_samples
    if gold is None:
        raise RecipeError(
            "distill_transfer takes the train examples after the first max_train_samples: set max_train_samples"
        )
    run.data_args.max_train_samples = gold + transfer
    try:
        raw = run.load_data()
    finally:
        run.data_args.max_train_samples = gold
    train = raw["train"]
    raw["train"] = train.select(range(min(gold, len(train))))
    extra = train.select(range(len(raw["train"]), len(train)))
    if len(extra) < transfer:
        logger.warning(
            "distill_transfer: the train split has %d examples after its first %d, not %d", len(extra), gold, transfer
        )
    return raw, extra


class Distillation:
    """A run's teacher: loaded before any output is written (a bad teacher fails early), labels the training
    data once the output folder is ready, and builds the Trainer with the mixed loss."""

    def __init__(self, args: DistillationArguments, run):
        self.args, self.run = args, run
        self.task = run.task
        self.targets = TARGETS[self.task.kind]
        path = teacher_path(args.teacher, run.training_args.seed)
        self.model, self.tokenizer, self.description = load_teacher(
            args.teacher, path, self.task, run.model_args, run.data_args.max_seq_length
        )
        self.fingerprint = teacher_fingerprint(path)
        self.relations = None  # distill_relations: set by initialize_student
        self.description.update(
            alpha=args.distill_alpha,
            temperature=args.distill_temperature,
            augment=args.distill_augment,
            transfer=args.distill_transfer,
            caches=[],
        )

    @classmethod
    def for_run(cls, run) -> "Distillation | None":
        args = getattr(run, "distill_args", None)
        return cls(args, run) if args is not None and args.teacher else None

    def initialize_student(self, model, tokenizer) -> None:
        """What the student needs of the teacher before training: its embeddings (distill_init_embeddings), the
        hooks of the relation term (distill_relations). Checked here, before any output is written."""
        if self.args.distill_init_embeddings:
            self.initialize_embeddings(model, tokenizer)
        if self.args.distill_relations:
            self.require_shared_tokenizer(
                tokenizer, "distill_relations", "their attention relations would be over other tokens"
            )
            self.relations = RelationDistillation(
                model,
                self.model,
                self.args.distill_relations,
                self.args.distill_relation_heads,
                self.tokenizer.model_input_names,
            )
            self.description["relations"] = self.relations.describe()

    def require_shared_tokenizer(self, tokenizer, key: str, why: str) -> None:
        """One error line when the student's tokenizer is not the teacher's and the recipe key `key` needs it."""
        if not same_tokenizer(tokenizer, self.tokenizer):
            raise RecipeError(
                f"{key}: the teacher {self.description['path']} has another tokenizer than the student; {why}"
            )

    def initialize_embeddings(self, model, tokenizer) -> None:
        """The scratch student's embeddings start from the teacher's (distillation_init.py). A resumed run then loads
        its checkpoint over them."""
        if self.run.model_args.scratch_preset is None:
            raise RecipeError(
                "distill_init_embeddings starts a student from scratch (scratch_preset); this run loads "
                f"{self.run.model_args.model_name_or_path}, whose embeddings are trained already"
            )
        self.require_shared_tokenizer(
            tokenizer, "distill_init_embeddings", "its embedding rows would belong to other tokens"
        )
        written = project_teacher_embeddings(model, self.model)
        logger.info(
            "distill_init_embeddings: %s from the teacher, projected to width %d (%.1f%% of the word table's variance)",
            ", ".join(written["tables"]),
            written["width"],
            100 * written["variance_kept"],
        )
        self.description["init_embeddings"] = written

    def label_training_data(
        self, raw: datasets.DatasetDict, features: datasets.DatasetDict, tokenizer, transfer=None
    ) -> datasets.DatasetDict:
        """features["train"] with the teacher's logits, plus the augmented examples and the transfer set (`transfer`,
        from load_data_with_transfer_set), all labelled by the teacher; the teacher is freed after."""
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
        extra_sets = []  # (recipe key, description name, raw examples only the teacher labels)
        if self.args.distill_augment:
            mask_token = self.tokenizer.mask_token or tokenizer.mask_token or "[MASK]"
            fields = self.task.behaviour.augmented_fields(self.task)
            augmented = augment_examples(
                raw["train"],
                fields,
                self.args.distill_augment,
                self.args.distill_augment_seed,
                mask_token,
                neighbours=self.swap_table(raw["train"], fields),
                p_swap=self.args.distill_augment_swap,
            )
            extra_sets.append(("distill_augment", "augmented", augmented))
        if transfer is not None and len(transfer):
            extra_sets.append(("distill_transfer", "transfer", transfer))
        for key, name, extra_raw in extra_sets:
            extra = self.run.preprocess(datasets.DatasetDict(train=extra_raw), tokenizer)["train"]
            extra = self.with_teacher_logits(extra_raw, extra, shared)
            extra = teacher_labelled(extra, self.targets).cast(train.features)  # their own labels are overwritten
            train = datasets.concatenate_datasets([train, extra])
            logger.info(
                "%s: %d teacher-labelled examples (%d features) added to %d train examples",
                key,
                len(extra_raw),
                len(extra),
                len(raw["train"]),
            )
            self.description[f"{name}_examples"] = len(extra_raw)
            self.description[f"{name}_features"] = len(extra)  # QA: the windows of the new questions
        features["train"] = train
        if self.relations is None:
            self.model = None  # the teacher is not needed any more
            gc.collect()
        return features

    def swap_table(self, train: datasets.Dataset, fields: tuple[str, ...]) -> dict[str, list[str]] | None:
        """The nearest words in the teacher's input embeddings of the words of `fields`, when the recipe swaps words."""
        if not self.args.distill_augment_swap:
            return None
        words = {word for name in fields for text in train[name] for word in text.split()}
        table = word_neighbours(self.model.get_input_embeddings().weight, self.tokenizer.get_vocab(), words)
        logger.info(
            "distill_augment_swap: %d of %d distinct train words have neighbours in the teacher's embeddings",
            len(table),
            len({word_parts(word)[1].lower() for word in words}),
        )
        self.description["augment_swap"] = self.args.distill_augment_swap
        return table

    def with_teacher_logits(self, raw_split, student_features, shared: bool) -> datasets.Dataset:
        """student_features plus a teacher_logits column, from the cache or by running the teacher."""
        teacher_features = student_features
        if not shared:  # the teacher reads the same examples with its own tokenizer, row for row
            teacher_features = self.run.preprocess(datasets.DatasetDict(train=raw_split), self.tokenizer)["train"]
        columns = [c for c in self.tokenizer.model_input_names if c in teacher_features.column_names]
        key = cache_key(self.fingerprint, self.targets, teacher_features, columns)
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
            relations=self.relations,
            **trainer_kwargs,
        )


def teacher_labelled(features: datasets.Dataset, targets: Targets) -> datasets.Dataset:
    """Gold labels of examples only the teacher labelled: its argmax (classification; QA: the start and the end token
    of each window), or its score (regression)."""
    rows = features[TEACHER_COLUMN]
    for output, column in enumerate(targets.labels):
        if targets.per_token:  # [[start logits], [end logits]] per window, each as long as the window
            values = [int(np.argmax(row[output])) for row in rows]
        else:
            logits = np.asarray(rows, dtype=np.float32)
            values = logits.argmax(-1).tolist() if targets.soft else logits[:, 0].tolist()
        features = features.remove_columns(column).add_column(column, values)
    return features
