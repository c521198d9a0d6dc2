"""Start a pretraining model's output biases at the data's prior (`output_bias_prior: true`).

Why: the output biases start at zero, so at step 0 the masked-LM head (or ELECTRA's generator) predicts a uniform
distribution over 30k tokens and the discriminator predicts "replaced" half the time. The first thing either loss
teaches is therefore the prior: token frequencies, and the ~15% replaced-token rate. Adam moves a bias by about
the learning rate per step, so at 1e-4 a bias needs over 10,000 steps to reach logit(0.15) = -1.7 or a rare word's
log-frequency of -12. Long before that the network finds a faster way: every position's hidden state grows a shared
direction that the head maps onto the prior. That is the collapse and the plateau our CPU runs sat on (RESULTS.md:
mean cosine 0.9-0.99 between positions, RTD recall 0). Starting the biases at the prior ("init well" in Karpathy's
recipe; the same reason detection models start the classifier bias at the rare-class prior) leaves the network
only the part of the task that needs context.

- masked-LM head / ELECTRA generator: bias = log of the add-one-smoothed unigram frequencies of the training
  tokens that can be masked (special tokens excluded). The loss at step 0 is then the unigram model's.
- ELECTRA discriminator: bias = logit of the share of tokens a unigram generator replaces,
  mlm_probability x (1 - sum of squared frequencies) (a sampled token equal to the original counts as original).

Only for models built from a scratch preset: a loaded checkpoint keeps its trained biases, and a resumed run
loads its checkpoint's weights after this.
"""

from __future__ import annotations

import itertools
import math

import datasets
import numpy as np
import torch

# Tokens counted per `Dataset.iter` batch: bounded memory however large the corpus.
COUNT_BATCH_SIZE = 4096


def unigram_log_prior(train: datasets.Dataset, vocab_size: int, special_ids: list[int]) -> torch.Tensor:
    """(V,) log-frequencies of the maskable training tokens, add-one smoothed; special tokens get the floor."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for batch in train.select_columns(["input_ids"]).iter(batch_size=COUNT_BATCH_SIZE):
        ids = np.fromiter(itertools.chain.from_iterable(batch["input_ids"]), dtype=np.int64)
        counts += np.bincount(ids, minlength=vocab_size)[:vocab_size]
    counts[special_ids] = 0  # never masked, so never a label
    smoothed = counts.astype(np.float64) + 1.0
    return torch.from_numpy(np.log(smoothed / smoothed.sum())).float()


def replaced_rate(log_prior: torch.Tensor, mlm_probability: float) -> float:
    """The share of scored tokens that a generator sampling the unigram prior replaces with a different token."""
    same_token = float(torch.exp(2 * log_prior.double()).sum())  # P(sample == original) when both are unigram draws
    return mlm_probability * (1.0 - same_token)


@torch.no_grad()
def set_output_priors(model: torch.nn.Module, log_prior: torch.Tensor, mlm_probability: float) -> dict[str, float]:
    """Write the priors into whichever output biases `model` has; returns what was set (for the run log)."""
    written = {"mlm_bias_entropy": unigram_entropy(log_prior)}
    if hasattr(model, "lm_head"):  # ScratchTransformerForMaskedLM
        model.lm_head.decoder.bias.copy_(log_prior)
    elif hasattr(model, "generator_head"):  # ScratchTransformerForPreTraining: generator and discriminator
        model.generator_head.bias.copy_(log_prior)
        rate = replaced_rate(log_prior, mlm_probability)
        model.discriminator_head.bias.fill_(math.log(rate / (1.0 - rate)))
        written["rtd_bias_rate"] = rate
    else:
        raise ValueError(f"output_bias_prior: {type(model).__name__} has no masked-LM or ELECTRA head to set.")
    return written


def unigram_entropy(log_prior: torch.Tensor) -> float:
    """The unigram model's cross-entropy on its own distribution, in nats: the masked-LM loss at step 0."""
    return float(-(log_prior.exp() * log_prior).sum())
