"""The compute curve of self-pretraining (pipelines/compute_curve.py): FLOPs from a real pretraining run's folder,
scores from real fine-tuning runs on their own scale (MNLI accuracy as a fraction, QA F1 as 0-100), and the plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REPO
from pipelines.compute_curve import plot, pretraining_flops_per_step, read_points
from pipelines.tasks.mlm import main as run_pretraining
from test_hub_and_cards import make_mnli_run, make_qa_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_pretraining(tmp_path_factory, minilm_path) -> Path:
    """Our `tiny` preset, 4 MLM steps on the QA fixture's contexts with MiniLM's tokenizer."""
    folder = tmp_path_factory.mktemp("curve-pretraining")
    squad = json.loads((REPO / "tests" / "fixtures" / "qa" / "tiny_squad.json").read_text())
    contexts = [p["context"] for article in squad["data"] for p in article["paragraphs"]]
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(contexts * 8) + "\n", encoding="utf-8")
    run_pretraining([
        "--scratch_preset", "tiny", "--tokenizer_name", minilm_path, "--train_files", str(corpus),
        "--validation_split_percentage", "20", "--max_seq_length", "32", "--max_eval_samples", "8",
        "--output_dir", str(folder / "run"), "--cache_dir", str(folder / "cache"), "--report_to", "none",
        "--max_steps", "4", "--per_device_train_batch_size", "4", "--seed", "0",
    ])
    return folder / "run"


def test_flops_and_scores_come_from_the_run_folders(tiny_pretraining, tmp_path_factory, data_dir, tiny_bert_dir, tmp_path):
    info = json.loads((tiny_pretraining / "run_info.json").read_text())
    config = json.loads((tiny_pretraining / "config.json").read_text())
    tokens = 4 * 32  # batch x block length, every block full (packed)
    expected = 6 * info["parameters"]["non_embedding"] * tokens + 6 * config["hidden_size"] * config["vocab_size"] * 0.15 * tokens
    assert pretraining_flops_per_step(tiny_pretraining) == pytest.approx(expected)

    mnli_run, qa_run = make_mnli_run(tmp_path_factory, data_dir), make_qa_run(tmp_path_factory, tiny_bert_dir)
    accuracy = read_points(tiny_pretraining, [f"4={mnli_run}", f"0={mnli_run}"], "eval_matched_accuracy")
    f1 = read_points(tiny_pretraining, [f"0={qa_run}"], "eval_f1")
    assert [p["step"] for p in accuracy] == [0, 4]  # sorted by step
    assert accuracy[1]["flops"] == pytest.approx(4 * expected) and accuracy[0]["flops"] == 0
    stored = json.loads((mnli_run / "all_results.json").read_text())["eval_matched_accuracy"]
    assert accuracy[0]["percent"] == pytest.approx(100 * stored)
    assert f1[0]["percent"] == json.loads((qa_run / "all_results.json").read_text())["eval_f1"]  # already 0-100

    with pytest.raises(KeyError, match="no 'eval_f1'"):
        read_points(tiny_pretraining, [f"0={mnli_run}"], "eval_f1")
    output = tmp_path / "curve.png"
    plot({"eval_matched_accuracy": accuracy}, output, "test")
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
