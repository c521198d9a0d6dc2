"""output_bias_prior: the output biases of a scratch pretraining model start at the data's prior, so that the loss
at step 0 is the unigram model's rather than a uniform guess over the vocabulary; a trained checkpoint keeps its own.
Real tiny runs of scripts/run_pretraining.py's main on a few lines of text with MiniLM's tokenizer."""

from __future__ import annotations

import math
from pathlib import Path

import datasets
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from pipelines.tasks.mlm import main as run_pretraining
from pipelines.tasks.output_priors import replaced_rate, unigram_log_prior

LINES = [
    "the cat sat on the mat and the dog sat on the rug",
    "a bird flew over the house and the tree",
    "the river runs to the sea through the valley",
    "children read the books that the teacher gave them",
]


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    return AutoTokenizer.from_pretrained(minilm_path)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "lines.txt"
    path.write_text("".join(f"{line} {i}\n" for i in range(40) for line in LINES), encoding="utf-8")
    return path


def test_unigram_prior_is_a_distribution_led_by_the_frequent_token_with_special_tokens_at_the_floor(tokenizer):
    the, cat = tokenizer.convert_tokens_to_ids(["the", "cat"])
    blocks = [[tokenizer.cls_token_id, the, the, cat, the, tokenizer.sep_token_id]] * 3
    log_prior = unigram_log_prior(
        datasets.Dataset.from_dict({"input_ids": blocks}),
        len(tokenizer),
        [tokenizer.cls_token_id, tokenizer.sep_token_id],
    )
    prior = log_prior.exp()
    assert prior.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert prior.argmax().item() == the
    # Add-one smoothing: "the" 9 + 1, "cat" 3 + 1, every other token (specials included) 0 + 1, out of 12 + V.
    total = 12 + len(tokenizer)
    assert prior[the].item() == pytest.approx(10 / total, rel=1e-4)
    assert prior[cat].item() == pytest.approx(4 / total, rel=1e-4)
    assert prior[tokenizer.cls_token_id].item() == pytest.approx(1 / total, rel=1e-4)
    # A unigram generator samples the original with probability sum(p^2); those tokens count as not replaced.
    assert replaced_rate(log_prior, 0.15) == pytest.approx(0.15 * (1 - float((prior.double() ** 2).sum())), rel=1e-6)


def from_scratch(tokenizer_path: str) -> tuple[str, ...]:
    return ("--scratch_preset", "tiny", "--tokenizer_name", tokenizer_path)


def pretrain(corpus: Path, model: tuple[str, ...], output_dir: Path, *extra: str) -> dict:
    """One step of a tiny pretraining run; `extra` options come last, so they override the ones here."""
    return run_pretraining(
        [
            *model,
            "--train_files",
            str(corpus),
            "--validation_split_percentage",
            "10",
            "--max_seq_length",
            "32",
            "--output_dir",
            str(output_dir),
            "--report_to",
            "none",
            "--max_steps",
            "1",
            "--per_device_train_batch_size",
            "8",
            "--learning_rate",
            "1e-6",
            "--seed",
            "0",
            *extra,
        ]
    )


@pytest.mark.slow
def test_mlm_starts_at_the_unigram_loss_with_the_prior_and_near_log_vocabulary_without(tmp_path, corpus, minilm_path):
    uniform = pretrain(corpus, from_scratch(minilm_path), tmp_path / "zero-bias")
    prior = pretrain(corpus, from_scratch(minilm_path), tmp_path / "prior", "--output_bias_prior", "true")
    log_vocabulary = math.log(30522)
    # A random model with zero biases guesses about uniformly; with the prior it starts near the corpus's unigram
    # cross-entropy (a handful of distinct words here: a few nats, against 10.3 for uniform).
    assert uniform["eval_loss_before"] > log_vocabulary - 0.5
    assert prior["eval_loss_before"] < uniform["eval_loss_before"] - 4.0
    # The prior was written into the MLM head's bias and trained on from there (one step at lr 1e-6 barely moves it).
    bias = load_file(tmp_path / "prior" / "model.safetensors")["lm_head.decoder.bias"]
    the = AutoTokenizer.from_pretrained(minilm_path).convert_tokens_to_ids("the")
    assert bias.argmax().item() == the and bias.max() - bias.min() > 5.0


@pytest.mark.slow
def test_electra_generator_starts_at_the_unigram_loss_and_the_discriminator_at_the_replaced_rate(
    tmp_path, corpus, minilm_path
):
    common = ("--objective", "electra", "--generator_size", "0.5", "--config_overrides", "norm_position=pre")
    uniform = pretrain(corpus, from_scratch(minilm_path), tmp_path / "zero-bias", *common)
    prior = pretrain(corpus, from_scratch(minilm_path), tmp_path / "prior", *common, "--output_bias_prior", "true")
    assert prior["eval_generator_loss_before"] < uniform["eval_generator_loss_before"] - 4.0
    # At the replaced-token rate (~15%) the discriminator calls every token original: accuracy = 1 - replaced share,
    # and its BCE is the base rate's entropy, far below the log 2 of a zero bias.
    assert prior["eval_rtd_recall_before"] == 0.0
    assert prior["eval_rtd_accuracy_before"] == pytest.approx(1 - prior["eval_replaced_fraction_before"], abs=1e-6)
    assert prior["eval_loss_before"] < uniform["eval_loss_before"] - 10.0
    weights = load_file(tmp_path / "prior" / "model.safetensors")
    rate = torch.sigmoid(weights["discriminator_head.bias"]).item()
    assert 0.10 < rate < 0.15


@pytest.mark.slow
def test_a_trained_checkpoint_keeps_its_biases(tmp_path, corpus, minilm_path, caplog):
    first = tmp_path / "first"
    pretrain(corpus, from_scratch(minilm_path), first)
    bias = load_file(first / "model.safetensors")["lm_head.decoder.bias"]
    continued = tmp_path / "continued"
    with caplog.at_level("INFO", logger="pipelines"):
        pretrain(
            corpus,
            ("--model_name_or_path", str(first)),
            continued,
            "--learning_rate",
            "1e-9",
            "--output_bias_prior",
            "true",
        )
    assert "its biases stay" in caplog.text
    # One Adam step at lr 1e-9 moves a weight by about 1e-9; the prior would have moved these by nats.
    assert torch.allclose(load_file(continued / "model.safetensors")["lm_head.decoder.bias"], bias, atol=1e-6)
