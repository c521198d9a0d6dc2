"""Word vectors (pipelines/word_vectors.py): skip-gram learns which tokens share contexts, and the checkpoint it
writes is a scratch model whose word table holds the vectors and fine-tunes like any checkpoint."""

from __future__ import annotations

import json
import random

import pytest
import torch.nn.functional as F
from conftest import ONE_LAYER_SCRATCH, REPO

from pipelines.arguments import RecipeError
from pipelines.word_vectors import main

ANIMALS = ["cat", "dog", "horse", "cow", "sheep"]
VEHICLES = ["car", "bus", "train", "truck", "boat"]


def write_corpus(path, lines: int, seed: int) -> str:
    """Lines of one topic each: animals only ever share a line with animals, vehicles with vehicles."""
    rng = random.Random(seed)
    text = [" ".join(rng.choices(ANIMALS if i % 2 else VEHICLES, k=8)) for i in range(lines)]
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    return str(path)


def args(tmp_path, output_dir, *extra: str) -> list[str]:
    return [
        *ONE_LAYER_SCRATCH,
        "--train_files",
        write_corpus(tmp_path / "train.txt", 400, 0),
        "--validation_file",
        write_corpus(tmp_path / "heldout.txt", 40, 1),
        "--subsample",
        "0",
        "--epochs",
        "8",
        "--batch_size",
        "512",
        "--output_dir",
        str(output_dir),
        *extra,
    ]


def test_vectors_group_tokens_that_share_contexts_and_the_checkpoint_holds_them(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    output = tmp_path / "vectors"
    info = main(args(tmp_path, output))
    history = info["history"]
    assert history[-1]["heldout_loss"] < history[0]["heldout_loss"]  # it learned something that holds out
    assert info["flops"] == info["pairs_seen"] * 3 * 2 * 6 * 256 > 0

    model = AutoModelForSequenceClassification.from_pretrained(output, num_labels=3)
    tokenizer = AutoTokenizer.from_pretrained(output)
    table = model.get_input_embeddings().weight.detach()
    ids = {word: tokenizer.convert_tokens_to_ids(word) for word in ANIMALS + VEHICLES}
    vectors = F.normalize(table[list(ids.values())], dim=-1)
    similarity = vectors @ vectors.T  # (10, 10): animals first, then vehicles
    within = (similarity[:5, :5].sum() - 5 + similarity[5:, 5:].sum() - 5) / 40
    across = similarity[:5, 5:].mean()
    assert within > across + 0.3, (within, across)
    # Rescaled to the scratch table's initial spread, so the random position table is not drowned out.
    assert abs(float(table.std()) - model.config.initializer_range) < 0.005
    saved = json.loads((output / "word_vectors.json").read_text())
    assert saved["tokens"] == 400 * 8 and saved["history"] == history

    # A finished run is never overwritten.
    with pytest.raises(RecipeError, match="is not empty"):
        main(args(tmp_path, output))


def test_a_fractional_budget_stops_inside_its_pass(tmp_path):
    """epochs 0.5: half the steps of a pass, the rate decayed to 0 over them; the pairs and FLOPs are what was used."""
    one = main(args(tmp_path, tmp_path / "one", "--epochs", "1"))
    half = main(args(tmp_path, tmp_path / "half", "--epochs", "0.5"))
    steps_per_pass = one["steps"]
    assert steps_per_pass == -(-one["pairs_seen"] // 512) > 2
    assert half["steps"] == round(0.5 * steps_per_pass) and len(half["history"]) == 1
    assert half["pairs_seen"] == half["steps"] * 512 < one["pairs_seen"]  # full batches only: the pass was cut
    assert half["flops"] == half["pairs_seen"] * 3 * 2 * 6 * 256


def test_bad_recipe_is_one_clear_error(tmp_path):
    with pytest.raises(RecipeError, match="train_files: .* is not a file"):
        main(args(tmp_path, tmp_path / "out", "--train_files", str(tmp_path / "missing.txt")))
    with pytest.raises(RecipeError, match="window is 0"):
        main(args(tmp_path, tmp_path / "out", "--window", "0"))
    with pytest.raises(RecipeError, match="epochs is 0.0"):
        main(args(tmp_path, tmp_path / "out", "--epochs", "0"))
    assert not (tmp_path / "out").exists()


def test_the_recipe_parses_and_names_its_commands():
    from pipelines.arguments import ModelArguments, parse_recipe
    from pipelines.word_vectors import WordVectorArguments

    recipe = REPO / "configs" / "pretraining" / "en_trainside_word_vectors_cpu.yaml"
    args, model_args, _ = parse_recipe([WordVectorArguments, ModelArguments], [str(recipe)])
    header = recipe.read_text(encoding="utf-8")
    assert header.startswith(f"# python scripts/train_word_vectors.py configs/pretraining/{recipe.name}")
    assert "scripts/build_corpus.py" in header and all(f.startswith("outputs/corpus/") for f in args.train_files)
    assert model_args.scratch_preset == "small-3l-4h" and args.output_dir.startswith("outputs/pretraining/")
