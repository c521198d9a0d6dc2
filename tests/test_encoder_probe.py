"""scripts/probe_encoder.py: per-layer cosine and context sensitivity of an encoder checkpoint on held-out text."""

import subprocess
import sys

import torch
from conftest import REPO
from transformers import AutoTokenizer

from pipelines.encoder_probe import ProbeArguments, held_out_blocks, probe_checkpoints, probe_encoder
from pipelines.models import ScratchTransformerForMaskedLM, config_from_preset

LINES = [
    f"the {animal} saw a {thing} near the {place} on day {day} ."
    for day in range(40)
    for animal, thing, place in [("cat", "ball", "river"), ("dog", "stick", "house")]
]


def tiny_checkpoint(folder, minilm_path):
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    torch.manual_seed(0)
    config = config_from_preset("tiny", vocab_size=tokenizer.vocab_size, norm_position="pre")
    ScratchTransformerForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_probe_reads_a_checkpoint_and_tells_a_collapsed_encoder(tmp_path, minilm_path):
    text = tmp_path / "heldout.txt"
    text.write_text("\n".join(LINES) + "\n")
    checkpoint = tiny_checkpoint(tmp_path / "tiny", minilm_path)

    [row] = probe_checkpoints(ProbeArguments(checkpoints=[str(checkpoint)], text=str(text), blocks=4, block_size=32))
    assert len(row["mean_cosine"]) == len(row["mean_norm"]) == 3  # embeddings + 2 layers
    assert all(-1.0 <= value < 0.9 for value in row["mean_cosine"])  # random weights: positions differ
    # Initial weights (std 0.02) give query-key scores near 0: every query attends almost uniformly.
    assert len(row["attention_entropy"]) == 2 and all(value > 0.99 for value in row["attention_entropy"])

    # A final LayerNorm with zero gain outputs its bias at every position: a fully collapsed encoder.
    model = ScratchTransformerForMaskedLM.from_pretrained(checkpoint).transformer
    torch.nn.init.zeros_(model.final_layer_norm.weight)
    torch.nn.init.constant_(model.final_layer_norm.bias, 0.5)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    blocks = held_out_blocks(tokenizer, text, 4, 32)
    assert blocks.shape == (4, 32) and bool((blocks[:, 0] == tokenizer.cls_token_id).all())
    collapsed = probe_encoder(model, blocks)
    assert collapsed["mean_cosine"][-1] > 0.9999 and collapsed["mean_cosine"][:-1] == row["mean_cosine"][:-1]

    # Scaled-up query/key weights make the scores large: attention concentrates on a few keys, entropy falls.
    with torch.no_grad():
        model.layers[0].attention.qkv.weight.mul_(100.0)
    sharpened = probe_encoder(model, blocks)
    assert sharpened["attention_entropy"][0] < 0.8 * row["attention_entropy"][0]


def test_probe_script_prints_a_table_and_names_a_short_text(tmp_path, minilm_path):
    text = tmp_path / "heldout.txt"
    text.write_text("\n".join(LINES) + "\n")
    checkpoint = tiny_checkpoint(tmp_path / "tiny", minilm_path)
    command = [
        sys.executable,
        str(REPO / "scripts" / "probe_encoder.py"),
        "--checkpoints",
        str(checkpoint),
        "--text",
        str(text),
    ]
    done = subprocess.run([*command, "--blocks", "2", "--block_size", "32"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"| {checkpoint} |" in done.stdout and "mean cosine by layer" in done.stdout

    short = subprocess.run([*command, "--blocks", "500"], capture_output=True, text=True)
    assert short.returncode == 2
    assert f"error: {text}: only" in short.stderr and "500 asked for" in short.stderr
