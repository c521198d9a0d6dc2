"""ELECTRA pretraining (Clark et al. 2020), the `objective: electra` of scripts/run_pretraining.py.

The text, blocks and masked positions are MLM's (pipelines/tasks/mlm.py); what differs:
- the collator masks with [MASK] only (the generator, not the collator, decides what goes there) and adds
  `scored_mask`, the tokens the discriminator is scored on: every token that is neither special nor padding;
- the model is `ScratchTransformerForPreTraining` (pipelines/models/scratch_transformer): a small generator fills the
  masked positions with sampled tokens and the encoder learns for every token whether it was replaced;
- evaluation reports, besides eval_loss, the generator's held-out MLM loss, the discriminator's accuracy over all
  scored tokens, the share of the replaced tokens it finds, and the share of scored tokens that were replaced: the gate
  that shows whether a checkpoint learned.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DataCollatorForLanguageModeling, EvalPrediction, PreTrainedTokenizerBase

# The Trainer adds the "eval_" prefix; these are the gate metrics of an ELECTRA run (all_results.json, log_history).
# A discriminator that learned nothing calls every token original: its accuracy is 1 - eval_replaced_fraction and its
# eval_rtd_recall (the share of replaced tokens it finds) is 0.
GATE_METRICS = ("eval_loss", "eval_generator_loss", "eval_rtd_accuracy", "eval_rtd_recall", "eval_replaced_fraction")


@dataclass
class ReplacedTokenCollator:
    """MLM masking from the library ([MASK] at every chosen position, labels = the originals), plus `scored_mask`."""

    masker: DataCollatorForLanguageModeling
    special_ids: torch.Tensor  # every special token id ([CLS], [SEP], [PAD], [MASK], ...)

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        batch = self.masker(examples)
        # Masked positions now hold [MASK] (a special id) but were ordinary tokens; everything else is as it came.
        scored = (batch["labels"] != -100) | ~torch.isin(batch["input_ids"], self.special_ids)
        if "attention_mask" in batch:
            scored &= batch["attention_mask"].bool()
        batch["scored_mask"] = scored
        return batch


def make_electra_collator(
    tokenizer: PreTrainedTokenizerBase, mlm_probability: float, whole_word_mask: bool
) -> ReplacedTokenCollator:
    masker = DataCollatorForLanguageModeling(
        tokenizer=tokenizer,
        mlm=True,
        mlm_probability=mlm_probability,
        whole_word_mask=whole_word_mask,
        mask_replace_prob=1.0,
        random_replace_prob=0.0,
    )
    return ReplacedTokenCollator(masker, torch.tensor(sorted(set(tokenizer.all_special_ids))))


def compute_electra_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """Add up the per-batch sums the model returns (ScratchTransformerForPreTrainingOutput, in field order)."""
    loss_sum, masked, correct, scored, replaced, detected = (float(part.sum()) for part in prediction.predictions)
    return {
        "generator_loss": loss_sum / max(masked, 1.0),
        "rtd_accuracy": correct / max(scored, 1.0),
        "rtd_recall": detected / max(replaced, 1.0),
        "replaced_fraction": replaced / max(scored, 1.0),
    }
