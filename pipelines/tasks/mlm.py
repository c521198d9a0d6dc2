"""Pretraining: text files -> packed token blocks -> 15% masking -> Trainer -> held-out loss (MLM or ELECTRA).

    accelerate launch --config_file configs/accelerate_cpu.yaml scripts/run_pretraining.py \
        configs/pretraining/ko_small_3l_4h_cpu.yaml

The steps, in the order `main` runs them:
1. `load_raw_datasets`: plain-text files (one paragraph per line) through the `datasets` "text" builder. Held-out
   text is either `validation_file` or the last `validation_split_percentage` % of the training lines: one contiguous
   block at the end, the same every run. A block rather than scattered lines keeps whole articles out of training
   (only the article cut in two has paragraphs on both sides), so perplexity is measured on unseen text.
2. `preprocess`: tokenize, then pack (default) or keep one line per example (`line_by_line`).
   Packing convention (BERT-style blocks, not the run_mlm.py one): every line is tokenized without special tokens and
   followed by [SEP], which marks the paragraph boundary; the stream is cut into pieces of `max_seq_length - 2`
   tokens and each piece becomes `[CLS] piece [SEP]`. So every block starts with [CLS] at position 0, as the
   fine-tuning inputs (MNLI, QA) do, and every block has exactly `max_seq_length` tokens: no padding, no wasted
   compute. The tail of each map batch (fewer than `max_seq_length - 2` tokens per 1,000 lines) is dropped.
3. `make_collator`: transformers' `DataCollatorForLanguageModeling` picks 15% of the non-special tokens; of those
   80% become [MASK], 10% a random token, 10% stay as they are; labels are -100 everywhere else.
   With `whole_word_mask`, the collator groups word pieces into words by their character offsets (transformers v5
   reads `offset_mapping`, so we keep offsets through packing) and masks whole words. That mode only replaces with
   [MASK] (the library has no random replacement for whole words).
4. `main`: held-out loss and perplexity of the random (or loaded) model, training, the same evaluation again with the
   same masks, and a save that fine-tuning can load with `AutoModelForSequenceClassification` /
   `AutoModelForQuestionAnswering.from_pretrained(output_dir)`.

`objective: electra` keeps steps 1-2 and swaps the collator, the model and the metrics (pipelines/tasks/electra.py).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import torch
from transformers import (
    AutoModelForMaskedLM,
    AutoModelForPreTraining,
    DataCollatorForLanguageModeling,
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
    set_seed,
)

from pipelines import model_loading
from pipelines.arguments import RecipeError
from pipelines.data_files import DataError, DataFileNotFound
from pipelines.run import TaskRun
from pipelines.tasks import output_priors
from pipelines.tasks.electra import GATE_METRICS, compute_electra_metrics, make_electra_collator

logger = logging.getLogger("pipelines")

# Lines per `datasets.map` batch. Packing happens within a batch, so this also bounds how much text is dropped.
MAP_BATCH_SIZE = 1000
OBJECTIVES = ("mlm", "electra")


@dataclass
class PretrainingDataArguments:
    """Which text to pretrain on and how it becomes masked blocks."""

    train_files: list[str] = field(
        default_factory=list,
        metadata={"help": "Plain-text files, one paragraph per line (e.g. ../shared/data/corpus/kowiki_sample.txt)."},
    )
    validation_file: str | None = field(
        default=None, metadata={"help": "Held-out text file. Default: the tail of the training lines."}
    )
    validation_split_percentage: float = field(
        default=5.0,
        metadata={"help": "Without validation_file: this % of the training lines, taken from the end, is held out."},
    )
    max_seq_length: int = field(default=128, metadata={"help": "Tokens per block, [CLS] and [SEP] included."})
    mlm_probability: float = field(default=0.15, metadata={"help": "Share of tokens (or words) chosen for prediction."})
    whole_word_mask: bool = field(
        default=False, metadata={"help": "Mask all pieces of a word together (only [MASK] replacement)."}
    )
    line_by_line: bool = field(
        default=False, metadata={"help": "One line = one example (truncated, padded per batch) instead of packing."}
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N training blocks (quick runs)."}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep only the first N held-out blocks."})
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for tokenization (datasets num_proc)."}
    )
    overwrite_cache: bool = field(
        default=False, metadata={"help": "Recompute tokenization instead of reusing the datasets cache."}
    )
    objective: str = field(
        default="mlm",
        metadata={"help": "mlm (masked-LM) or electra (replaced-token detection, pipelines/tasks/electra.py)."},
    )
    generator_size: float = field(
        default=0.25, metadata={"help": "electra: generator width and heads as a fraction of the discriminator's."}
    )
    rtd_weight: float = field(
        default=50.0, metadata={"help": "electra: loss = generator MLM loss + rtd_weight x discriminator BCE."}
    )
    pretraining_dropout: float | None = field(
        default=None,
        metadata={"help": "Dropout while pretraining (Cramming: 0.0); the saved config keeps the model's own values."},
    )
    output_bias_prior: bool = field(
        default=False,
        metadata={
            "help": "Start the output biases of a scratch model at the data's prior (token frequencies; ELECTRA's "
            "replaced rate) instead of zero (pipelines/tasks/output_priors.py)."
        },
    )

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}.")
        if not 0 < self.generator_size <= 1:
            raise ValueError(f"generator_size must be in (0, 1], got {self.generator_size}.")
        if self.pretraining_dropout is not None and not 0 <= self.pretraining_dropout < 1:
            raise ValueError(f"pretraining_dropout must be in [0, 1), got {self.pretraining_dropout}.")
        if not self.train_files:
            raise ValueError("PretrainingDataArguments: set train_files (one or more plain-text files).")
        if self.validation_file is None and not 0 < self.validation_split_percentage < 100:
            raise ValueError(
                "Held-out text is needed for perplexity: set validation_file, "
                "or validation_split_percentage in (0, 100)."
            )
        if self.max_seq_length < 8:
            raise ValueError(f"max_seq_length must be at least 8, got {self.max_seq_length}.")


def perplexity(eval_loss: float) -> float:
    """exp(mean cross-entropy of the masked tokens), in nats; inf where exp overflows (a diverged model)."""
    try:
        return math.exp(eval_loss)
    except OverflowError:
        return math.inf


# ---------------------------------------------------------------------------------------------------------------------
# Text


def load_raw_datasets(data_args: PretrainingDataArguments, cache_dir: str | None = None) -> datasets.DatasetDict:
    """{"train", "validation"} datasets of lines (column "text") from the files in `data_args`."""
    files = list(data_args.train_files) + ([data_args.validation_file] if data_args.validation_file else [])
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise DataFileNotFound(
            f"Pretraining text file(s) not found: {', '.join(missing)} (paths are relative to {Path.cwd()})"
        )

    def read_lines(paths) -> datasets.Dataset:
        return datasets.load_dataset(
            "text", data_files={"train": [str(p) for p in paths]}, split="train", cache_dir=cache_dir
        )

    train = read_lines(data_args.train_files)
    if data_args.validation_file:
        return datasets.DatasetDict(train=train, validation=read_lines([data_args.validation_file]))

    held_out = max(1, round(len(train) * data_args.validation_split_percentage / 100))
    if held_out >= len(train):
        raise DataError(
            f"{len(train)} lines are too few to hold out {data_args.validation_split_percentage}% "
            "and train on the rest."
        )
    cut = len(train) - held_out
    return datasets.DatasetDict(train=train.select(range(cut)), validation=train.select(range(cut, len(train))))


# ---------------------------------------------------------------------------------------------------------------------
# Tokens and blocks


def pack_into_blocks(batch: dict[str, list[list]], block_size: int, cls_id: int, sep_id: int) -> dict[str, list[list]]:
    """Concatenate the token lists of a batch and cut them into `[CLS] piece [SEP]` blocks of exactly `block_size`.

    `batch["input_ids"]` is one list of ids per line (each line already ends with its [SEP] separator). An
    `offset_mapping` column, when present, is packed alongside so whole-word masking still finds word boundaries;
    [CLS] and [SEP] get the offset (0, 0) that the tokenizer gives special tokens.
    """
    piece_size = block_size - 2
    stream = [token for line in batch["input_ids"] for token in line]
    usable = len(stream) // piece_size * piece_size  # the remainder (< piece_size tokens) is dropped
    blocks = {"input_ids": [], "special_tokens_mask": []}
    for start in range(0, usable, piece_size):
        piece = stream[start : start + piece_size]
        block = [cls_id, *piece, sep_id]
        blocks["input_ids"].append(block)
        # [SEP] separators between lines are special too: the collator never masks them.
        blocks["special_tokens_mask"].append([1 if token in (cls_id, sep_id) else 0 for token in block])

    if "offset_mapping" in batch:
        offset_stream = [offset for line in batch["offset_mapping"] for offset in line]
        blocks["offset_mapping"] = [
            [(0, 0), *offset_stream[start : start + piece_size], (0, 0)] for start in range(0, usable, piece_size)
        ]
    return blocks


def line_tokenizer(tokenizer: PreTrainedTokenizerBase, data_args: PretrainingDataArguments):
    """line_by_line: each line one example, truncated to max_seq_length."""
    keep_offsets = data_args.whole_word_mask

    def tokenize_lines(batch):
        return tokenizer(
            batch["text"],
            truncation=True,
            max_length=data_args.max_seq_length,
            # Offsets do not get padded by the collator, so whole-word masking needs equal lengths already here.
            padding="max_length" if keep_offsets else False,
            return_special_tokens_mask=True,
            return_offsets_mapping=keep_offsets,
        )

    return tokenize_lines


def packing_tokenizer(tokenizer: PreTrainedTokenizerBase, keep_offsets: bool):
    """Packing: each line's tokens followed by [SEP] as a separator; pack_into_blocks then frames each block."""

    def tokenize_for_packing(batch):
        encoded = tokenizer(
            batch["text"],
            add_special_tokens=False,
            return_attention_mask=False,
            return_token_type_ids=False,
            return_offsets_mapping=keep_offsets,
            verbose=False,  # lines longer than model_max_length are fine here: packing cuts them into blocks
        )
        result = {"input_ids": [ids + [tokenizer.sep_token_id] for ids in encoded["input_ids"]]}
        if keep_offsets:
            result["offset_mapping"] = [list(offsets) + [(0, 0)] for offsets in encoded["offset_mapping"]]
        return result

    return tokenize_for_packing


def preprocess(
    raw: datasets.DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    data_args: PretrainingDataArguments,
    training_args: TrainingArguments,
) -> datasets.DatasetDict:
    """Lines -> model examples: packed blocks of `max_seq_length` tokens, or single lines with `line_by_line`.

    The columns are exactly what the collator reads (input_ids, special_tokens_mask, and offset_mapping for
    whole-word masking; line_by_line adds attention_mask and token_type_ids). `datasets` caches each map by its
    inputs, so a second run with the same files and tokenizer skips tokenization.
    """
    if data_args.max_seq_length > tokenizer.model_max_length:
        raise RecipeError(
            f"max_seq_length {data_args.max_seq_length} exceeds the tokenizer's "
            f"model_max_length {tokenizer.model_max_length}."
        )
    keep_offsets = data_args.whole_word_mask
    map_options = dict(
        batched=True,
        batch_size=MAP_BATCH_SIZE,
        num_proc=data_args.preprocessing_num_workers,
        load_from_cache_file=not data_args.overwrite_cache,
    )

    def non_empty(example) -> bool:
        return bool(example["text"].strip())

    tokenize_lines, tokenize_for_packing = (
        line_tokenizer(tokenizer, data_args),
        packing_tokenizer(tokenizer, keep_offsets),
    )

    def pack(batch):
        return pack_into_blocks(batch, data_args.max_seq_length, tokenizer.cls_token_id, tokenizer.sep_token_id)

    with training_args.main_process_first(desc="tokenizing and packing"):
        lines = raw.filter(non_empty, desc="dropping empty lines", num_proc=data_args.preprocessing_num_workers)
        if data_args.line_by_line:
            examples = lines.map(tokenize_lines, remove_columns=["text"], desc="tokenizing lines", **map_options)
        else:
            tokens = lines.map(tokenize_for_packing, remove_columns=["text"], desc="tokenizing", **map_options)
            examples = tokens.map(
                pack,
                remove_columns=tokens["train"].column_names,
                desc=f"packing into blocks of {data_args.max_seq_length}",
                **map_options,
            )

    if data_args.max_train_samples is not None:
        examples["train"] = examples["train"].select(range(min(data_args.max_train_samples, len(examples["train"]))))
    if data_args.max_eval_samples is not None:
        examples["validation"] = examples["validation"].select(
            range(min(data_args.max_eval_samples, len(examples["validation"])))
        )
    for split, dataset in examples.items():
        if len(dataset) == 0:
            raise DataError(
                f"No {split} examples: the {split} text yields fewer than {data_args.max_seq_length - 2} tokens."
            )
    return examples


def make_collator(
    tokenizer: PreTrainedTokenizerBase, data_args: PretrainingDataArguments
) -> DataCollatorForLanguageModeling:
    """BERT masking (15%; 80% [MASK] / 10% random / 10% unchanged) from the library, token- or word-level."""
    if data_args.whole_word_mask:
        # The library replaces whole words with [MASK] only (it warns and forces this otherwise); say so explicitly.
        replace = {"mask_replace_prob": 1.0, "random_replace_prob": 0.0}
    else:
        replace = {"mask_replace_prob": 0.8, "random_replace_prob": 0.1}
    return DataCollatorForLanguageModeling(
        tokenizer=tokenizer,
        mlm=True,
        mlm_probability=data_args.mlm_probability,
        whole_word_mask=data_args.whole_word_mask,
        **replace,
    )


# ---------------------------------------------------------------------------------------------------------------------
# Run


def make_pretraining_collator(tokenizer: PreTrainedTokenizerBase, data_args: PretrainingDataArguments):
    """The objective's collator: BERT masking (mlm), or [MASK]-only masking plus the scored tokens (electra)."""
    if data_args.objective == "electra":
        return make_electra_collator(tokenizer, data_args.mlm_probability, data_args.whole_word_mask)
    return make_collator(tokenizer, data_args)


def load_pretraining_model(model_args, data_args: PretrainingDataArguments, tokenizer: PreTrainedTokenizerBase):
    """The objective's model (MLM head, or ELECTRA's generator + discriminator), dropout set for pretraining.

    A scratch preset gets random weights sized to the tokenizer; a checkpoint (continued pretraining) keeps its
    encoder, and its MLM head (or ELECTRA generator) if it has one.
    """
    if tokenizer.mask_token is None or tokenizer.cls_token is None or tokenizer.sep_token is None:
        raise RecipeError("The tokenizer lacks [MASK], [CLS] or [SEP]; train one with scripts/train_tokenizer.py.")
    if data_args.objective == "electra":
        extra = {"generator_size": data_args.generator_size, "rtd_weight": data_args.rtd_weight}
        model = model_loading.load_model(
            model_args, AutoModelForPreTraining, tokenizer, max_seq_length=data_args.max_seq_length, **extra
        )
    else:
        model = model_loading.load_model(
            model_args, AutoModelForMaskedLM, tokenizer, max_seq_length=data_args.max_seq_length
        )
    if data_args.pretraining_dropout is not None:
        set_dropout(model, data_args.pretraining_dropout)
    return model


def set_dropout(model, probability: float) -> None:
    """Set every dropout of the built model to `probability` (Cramming pretrains with 0.0) without touching its config:
    the saved config.json keeps the model's own dropout, so fine-tuning from the folder gets dropout back."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = probability
        if hasattr(module, "dropout_prob"):  # attention-probability dropout, read at call time
            module.dropout_prob = probability


def evaluate_heldout(trainer: Trainer, seed: int, objective: str) -> dict[str, float]:
    """The gate values: held-out masked-LM loss and perplexity (mlm), or the ELECTRA metrics (see electra.py).

    Masking is random; the trainer's eval_seed makes every evaluation (before, during and after training) score the
    same masked positions, so the values are directly comparable. The seed is also reset before, as it always was,
    so that training starts from the same random state.
    """
    set_seed(seed)
    metrics = trainer.evaluate()
    if objective == "electra":
        return {name: metrics[name] for name in GATE_METRICS}
    return {"eval_loss": metrics["eval_loss"], "eval_perplexity": perplexity(metrics["eval_loss"])}


class PretrainingRun(TaskRun):
    """Masked-language-model or ELECTRA pretraining: no task head, so no LoRA, no Hub push at the end, no model card."""

    name, data_arguments, uses_lora, push_at_end = "mlm", PretrainingDataArguments, False, False

    def adjust_arguments(self):
        args = self.training_args
        # The collator reads special_tokens_mask (and offset_mapping), which the model's forward does not take, so the
        # Trainer must not drop them; `preprocess` leaves only columns that the collator or the model use.
        args.remove_unused_columns = False
        # Evaluation needs only the loss; gathering (blocks x 128 x vocab) logits would take gigabytes. ELECTRA's model
        # returns a few per-batch sums instead of logits, which compute_electra_metrics adds up.
        args.prediction_loss_only = self.data_args.objective == "mlm"
        if not self.data_args.line_by_line and args.train_sampling_strategy == "group_by_length":
            # Packed blocks all have the same length: grouping by length has nothing to group and would only scan
            # the data.
            logger.info("Packed blocks have equal lengths: train_sampling_strategy group_by_length -> random")
            args.train_sampling_strategy = "random"

    def load_data(self):
        return load_raw_datasets(self.data_args, cache_dir=self.model_args.cache_dir)

    def load_model(self, tokenizer):
        return load_pretraining_model(self.model_args, self.data_args, tokenizer)

    def preprocess(self, raw, tokenizer):
        return preprocess(raw, tokenizer, self.data_args, self.training_args)

    def describe(self, raw, examples):
        logger.info(
            "%d training and %d held-out examples of up to %d tokens",
            len(examples["train"]),
            len(examples["validation"]),
            self.data_args.max_seq_length,
        )
        # Examples are packed blocks here (the shape every task records), then the lines they were packed from.
        return {
            "train_examples": len(examples["train"]),
            "eval_examples": {"validation": len(examples["validation"])},
            "train_lines": len(raw["train"]),
            "eval_lines": len(raw["validation"]),
            "train_blocks": len(examples["train"]),
            "eval_blocks": len(examples["validation"]),
            "objective": self.data_args.objective,
        }

    def trainer_options(self, examples, tokenizer):
        # The tokenizer (processing_class) is saved beside the model, so the output folder is complete for fine-tuning.
        options = {
            "train_dataset": examples["train"],
            "eval_dataset": examples["validation"],
            "data_collator": make_pretraining_collator(tokenizer, self.data_args),
        }
        if self.data_args.objective == "electra":
            options["compute_metrics"] = compute_electra_metrics
        return options

    def before_training(self, trainer):
        if self.data_args.output_bias_prior:
            self.start_at_prior(trainer.model, trainer.train_dataset, trainer.processing_class)
        trainer.eval_seed = self.training_args.seed
        self.before = evaluate_heldout(trainer, self.training_args.seed, self.data_args.objective)
        logger.info("Before training: %s", ", ".join(f"{name} {value:.4f}" for name, value in self.before.items()))

    def start_at_prior(self, model, train, tokenizer):
        """output_bias_prior: set the scratch model's output biases from the training tokens (output_priors.py)."""
        if self.model_args.scratch_preset is None:
            logger.info("output_bias_prior: %s is a trained model; its biases stay", self.model_args.model_name_or_path)
            return
        log_prior = output_priors.unigram_log_prior(train, len(tokenizer), tokenizer.all_special_ids)
        written = output_priors.set_output_priors(model, log_prior, self.data_args.mlm_probability)
        logger.info("output_bias_prior: %s", ", ".join(f"{name} {value:.4f}" for name, value in written.items()))

    def evaluate(self, trainer, raw, examples):
        after = evaluate_heldout(trainer, self.training_args.seed, self.data_args.objective)
        before = {f"{name}_before": value for name, value in self.before.items()}
        counts = {"train_samples": len(examples["train"]), "eval_samples": len(examples["validation"])}
        results = {**counts, **before, **after}
        trainer.log_metrics("eval", results)
        return results, {}


def main(argv: list[str] | None = None) -> dict:
    """Parse a pretraining recipe, pretrain, save, and write `all_results.json`; returns what it wrote there."""
    return PretrainingRun.main(argv)
