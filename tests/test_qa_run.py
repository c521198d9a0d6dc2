"""QA end to end: a real `accelerate launch` of run_qa.py with a tiny model, outputs and the W&B run read back."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml
from conftest import REPO, launch_command, subprocess_env


@pytest.mark.slow
def test_run_qa_end_to_end(tmp_path, tiny_bert_dir):
    fixture = REPO / "tests" / "fixtures" / "qa" / "tiny_squad.json"
    output_dir = tmp_path / "run"
    recipe = tmp_path / "qa.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "model_name_or_path": str(tiny_bert_dir),
                "train_file": str(fixture),
                "validation_file": str(fixture),
                "max_seq_length": 64,
                "doc_stride": 16,
                "max_query_length": 16,
                "output_dir": str(output_dir),
                "max_steps": 4,
                "per_device_train_batch_size": 4,
                "learning_rate": 1e-3,
                "logging_steps": 1,
                "report_to": "wandb",
                "wandb_group": "qa-e2e",
                "wandb_job_type": "scratch",
                # EM/F1 inside the Trainer's evaluation: logged at every evaluation, and the best checkpoint
                # chosen by F1.
                "eval_strategy": "steps",
                "eval_steps": 2,
                "save_strategy": "steps",
                "save_steps": 2,
                "metric_for_best_model": "f1",
                "load_best_model_at_end": True,
            }
        )
    )
    result = subprocess.run(
        launch_command("scripts/run_qa.py", recipe),
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    results = json.loads((output_dir / "all_results.json").read_text())
    total_questions = sum(len(p["qas"]) for a in json.loads(fixture.read_text())["data"] for p in a["paragraphs"])
    assert results["eval_total"] == total_questions
    assert 0 <= results["eval_f1"] <= 100 and results["eval_metric"] == "squad_v1"
    rows = [json.loads(line) for line in (output_dir / "predictions_validation.jsonl").read_text().splitlines()]
    assert len(rows) == total_questions and all(
        {"id", "gold_answers", "predicted", "exact_match", "f1"} <= set(r) for r in rows
    )
    assert sum(r["exact_match"] for r in rows) / len(rows) == pytest.approx(results["eval_exact_match"])
    predictions = json.loads((output_dir / "predictions_validation.json").read_text())
    assert set(predictions) == {r["id"] for r in rows}
    assert (output_dir / "nbest_predictions_validation.json").is_file()
    assert json.loads((output_dir / "data_splits.json").read_text())
    # Counts in the one shape every task records (QA: questions), read back as the model card reads them.
    info = json.loads((output_dir / "run_info.json").read_text())
    assert info["train_examples"] == total_questions and info["eval_examples"] == {"validation": total_questions}
    from pipelines.run_folder import RunFolder

    run_folder = RunFolder.read(output_dir)
    assert run_folder.train_count == total_questions and run_folder.eval_counts == {"validation": total_questions}

    history = json.loads((output_dir / "log_history.json").read_text())
    evaluations = [row for row in history if "eval_f1" in row]
    assert [row["step"] for row in evaluations][:2] == [2, 4]
    assert all(0 <= row["eval_f1"] <= 100 and "eval_exact_match" in row for row in evaluations)
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert state["best_metric"] == pytest.approx(max(row["eval_f1"] for row in evaluations[:2]))
    best = max(evaluations[:2], key=lambda row: row["eval_f1"])
    assert state["best_model_checkpoint"].endswith(f"checkpoint-{best['step']}")

    from pipelines.tracking import find_offline_runs, read_offline_run

    run = read_offline_run(find_offline_runs(output_dir)[0])
    assert run["summary"]["eval_f1"] == pytest.approx(results["eval_f1"])
    assert run["run"]["group"] == "qa-e2e"
