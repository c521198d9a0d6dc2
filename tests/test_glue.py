"""GLUE (pipelines/tasks/glue.py): SST-2, CoLA and STS-B end to end on the local fixtures in tests/fixtures/glue,
through training (scripts/run_glue.py), the model card, scripts/predict.py and a comparison report; plus the official
metrics against scikit-learn's and scipy's definitions, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, launch_command, subprocess_env

from pipelines.arguments import RecipeError
from pipelines.data_files import DataError
from pipelines.metrics import load_metric
from pipelines.task_definitions.base import find_task
from pipelines.tasks import glue

FIXTURES = REPO / "tests" / "fixtures" / "glue"
sys.path.insert(0, str(REPO / "scripts"))  # predict.py, called in-process


def data_args(name: str, **extra) -> glue.GlueDataArguments:
    return glue.GlueDataArguments(
        task_name=name,
        train_file=str(FIXTURES / f"{name}_train.jsonl"),
        validation_file=str(FIXTURES / f"{name}_validation.jsonl"),
        **extra,
    )


def test_every_glue_task_is_known_with_its_official_metric():
    keys = {name: [m.key for m in find_task(name).metrics] for name in glue.GLUE_TASK_NAMES}
    assert keys["cola"] == ["eval_matthews_correlation"]
    assert keys["mrpc"] == keys["qqp"] == ["eval_f1", "eval_accuracy"]
    assert keys["stsb"] == ["eval_pearson", "eval_spearmanr"]
    assert keys["mnli"] == ["eval_matched_accuracy", "eval_mismatched_accuracy"]
    assert find_task("stsb").kind == "regression" and find_task("stsb").num_labels == 1
    assert find_task("qnli").input_fields == ("question", "sentence")


def test_metrics_match_the_reference_definitions():
    from scipy import stats

    predictions, references = np.array([0, 1, 1, 0, 1, 1, 0, 0]), np.array([0, 1, 0, 0, 1, 0, 1, 0])
    # Matthews = (TP*TN - FP*FN) / sqrt(...) with TP=2, TN=3, FP=2, FN=1.
    expected = (2 * 3 - 2 * 1) / np.sqrt(4 * 3 * 5 * 4)
    assert load_metric("glue", "cola").compute(predictions=predictions, references=references)[
        "matthews_correlation"
    ] == pytest.approx(expected)
    mrpc = load_metric("glue", "mrpc").compute(predictions=predictions, references=references)
    assert mrpc == pytest.approx({"accuracy": 5 / 8, "f1": 2 * 2 / (4 + 3)})
    scores, gold = [0.1, 2.5, 3.0, 4.9, 1.0], [0.0, 3.0, 2.0, 5.0, 1.5]
    stsb = load_metric("glue", "stsb").compute(predictions=scores, references=gold)
    assert stsb["pearson"] == pytest.approx(stats.pearsonr(scores, gold)[0])
    assert stsb["spearmanr"] == pytest.approx(stats.spearmanr(scores, gold)[0])


def test_local_files_load_with_label_names_and_scores(tmp_path):
    task = find_task("sst2")
    raw = glue.load_raw_datasets(data_args("sst2", max_eval_samples=5), task)
    assert raw["train"].features["label"].names == ["negative", "positive"] and len(raw["validation"]) == 5
    named = tmp_path / "named.jsonl"
    named.write_text(json.dumps({"sentence": "Fine.", "label": "positive"}) + "\n")
    assert glue.load_raw_datasets(glue.GlueDataArguments(task_name="sst2", train_file=str(named)), task)["train"][
        "label"
    ] == [1]
    stsb = glue.load_raw_datasets(data_args("stsb"), find_task("stsb"))
    assert stsb["validation"]["label"][0] == pytest.approx(4.5)


def test_bad_input_names_the_file_line_and_field(tmp_path):
    bad = tmp_path / "train.jsonl"
    bad.write_text(
        json.dumps({"sentence": "Good.", "label": 1}) + "\n" + json.dumps({"sentence": "Bad.", "label": 7}) + "\n"
    )
    with pytest.raises(
        DataError, match=r"train.jsonl, line 2: field 'label' is 7; expected 0, 1 or one of negative, positive"
    ):
        glue.load_raw_datasets(glue.GlueDataArguments(task_name="sst2", train_file=str(bad)), find_task("sst2"))
    bad.write_text(json.dumps({"sentence1": "A.", "sentence2": "", "label": 2.0}) + "\n")
    with pytest.raises(DataError, match=r"line 1: field 'sentence2' is empty"):
        glue.load_raw_datasets(glue.GlueDataArguments(task_name="stsb", train_file=str(bad)), find_task("stsb"))
    bad.write_text(json.dumps({"sentence1": "A.", "sentence2": "B.", "label": "high"}) + "\n")
    with pytest.raises(DataError, match=r"line 1: field 'label' is 'high'; expected a similarity score"):
        glue.load_raw_datasets(glue.GlueDataArguments(task_name="stsb", train_file=str(bad)), find_task("stsb"))
    with pytest.raises(RecipeError, match="task_name 'sst3': expected one of cola, sst2"):
        glue.GlueDataArguments(task_name="sst3")


def train(tmp_path: Path, name: str, model_dir: Path, seed: int = 3, launcher: bool = False) -> Path:
    output_dir = tmp_path / f"{name}-seed{seed}"
    recipe = tmp_path / f"{name}.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "task_name": name,
                "model_name_or_path": str(model_dir),
                "train_file": str(FIXTURES / f"{name}_train.jsonl"),
                "validation_file": str(FIXTURES / f"{name}_validation.jsonl"),
                "max_seq_length": 32,
                "output_dir": str(output_dir),
                "max_steps": 4,
                "per_device_train_batch_size": 8,
                "per_device_eval_batch_size": 8,
                "learning_rate": 1e-3,
                "logging_steps": 2,
                "seed": seed,
                "report_to": "none",
                "precision": "fp32",
                "use_cpu": True,
                "ignore_mismatched_sizes": True,  # the tiny checkpoint has a 3-label head
            }
        )
    )
    if not launcher:  # in-process: the same run without an interpreter start (~7 s of imports)
        glue.main([str(recipe)])
        return output_dir
    command = launch_command("scripts/run_glue.py", recipe)
    result = subprocess.run(command, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return output_dir


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sst2", "cola", "stsb"])
def test_glue_task_end_to_end(tmp_path, tiny_bert_dir, name):
    """Train, then the run's outputs, its model card, predict.py on new lines and a report of two seeds."""
    import predict  # scripts/predict.py

    from pipelines import reports
    from pipelines.model_card import build_model_card

    task = find_task(name)
    runs = [train(tmp_path, name, tiny_bert_dir, seed=seed, launcher=(name == "sst2" and seed == 1)) for seed in (1, 2)]
    results = json.loads((runs[0] / "all_results.json").read_text())
    assert json.loads((runs[0] / "run_info.json").read_text())["task"] == name
    rows = [json.loads(line) for line in (runs[0] / "predictions_validation.jsonl").read_text().splitlines()]
    gold = [json.loads(line)["label"] for line in (FIXTURES / f"{name}_validation.jsonl").read_text().splitlines()]
    assert [r["idx"] for r in rows] == list(range(12)) and [r["gold"] for r in rows] == pytest.approx(gold)
    for metric in task.metrics:
        assert metric.key in results, metric.key
    if name == "sst2":
        assert results["eval_accuracy"] == pytest.approx(np.mean([r["gold"] == r["predicted"] for r in rows]))
    if name == "stsb":
        from scipy import stats

        assert results["eval_pearson"] == pytest.approx(
            stats.pearsonr([r["predicted"] for r in rows], gold)[0], abs=1e-4
        )

    card = str(build_model_card(runs[0], repo_id=f"someone/tiny-{name}", image_dir=tmp_path))
    assert f"dataset_config: {name}" in card or f"config: {name}" in card
    assert f"fine-tuned on {task.title}" in card.replace("Fine-tuned", "fine-tuned")
    assert "premise" not in card.lower() and "exact_match" not in card

    inputs = tmp_path / "in.jsonl"
    examples = [{"id": i, **{field: f"Some text {i} for {field}." for field in task.input_fields}} for i in range(3)]
    inputs.write_text("".join(json.dumps(example) + "\n" for example in examples))
    output = tmp_path / "out.jsonl"
    predict_args = [str(runs[0]), "--input", str(inputs), "--output", str(output)]
    if name == "sst2":  # SST-2 goes through the real commands (accelerate launch above, python predict.py here)
        command = [sys.executable, str(REPO / "scripts" / "predict.py"), *predict_args]
        result = subprocess.run(
            command, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr[-3000:]
    else:
        assert predict.main(predict_args) == 0
    predicted = [json.loads(line) for line in output.read_text().splitlines()]
    assert [p["id"] for p in predicted] == [0, 1, 2]
    if task.kind == "regression":
        assert all(isinstance(p["predicted_score"], float) for p in predicted)
    else:
        assert all(
            p["predicted_label"] in task.label_names and set(p["scores"]) == set(task.label_names) for p in predicted
        )
        assert all(abs(sum(p["scores"].values()) - 1) < 1e-4 for p in predicted)

    summary = reports.build_report([("a", str(runs[0])), ("b", str(runs[1]))], tmp_path / "report", n_resamples=100)
    assert [c["split"] for c in summary["comparisons"]] == ["validation"]
    shown = [e for c in summary["comparisons"] for kind in c["examples"].values() for e in kind["shown"]]
    assert all(e["text"] for e in shown)  # the example texts come from the run's local files
    if task.kind == "classification":
        assert all(e["gold"] in task.label_names for e in shown)  # SST-2's and CoLA's label names, not MNLI's


def test_shipped_recipe_parses_for_every_task():
    from transformers import TrainingArguments

    from pipelines.arguments import ModelArguments, TrackingArguments, parse_recipe
    from pipelines.lora import PeftArguments

    recipe = REPO / "configs" / "glue" / "minilm.yaml"
    assert str(recipe.relative_to(REPO)) in recipe.read_text().splitlines()[0]
    types = (ModelArguments, glue.GlueDataArguments, TrackingArguments, PeftArguments, TrainingArguments)
    for name in glue.GLUE_TASK_NAMES:
        _, data, *_ = parse_recipe(types, [str(recipe), "--task_name", name, "--output_dir", f"outputs/glue/{name}"])
        assert data.task_name == name
