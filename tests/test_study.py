"""Studies: reading and checking study files, the job plan and commands, the shipped studies, and a real study of
2 arms x 2 seeds that is killed in the middle of a job and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, complete_checkpoint, subprocess_env

from pipelines import study as studies
from pipelines import study_jobs
from pipelines.study import StudyError, load_study


def write_study(folder: Path, base_recipe: dict | None = None, **spec) -> Path:
    recipe_path = folder / "base.yaml"
    recipe_path.write_text(
        yaml.safe_dump(
            base_recipe
            or {
                "model_name_or_path": "minilm",
                "learning_rate": 1e-4,
                "seed": 42,
                "output_dir": "outputs/x",
                "wandb_tags": ["mnli"],
            }
        )
    )
    defaults = {
        "name": "tiny-study",
        "script": str(REPO / "scripts" / "run_mnli.py"),
        "launch_config": str(REPO / "configs" / "accelerate_cpu.yaml"),
        "recipe": str(recipe_path),
        "seeds": [1, 2],
        "output_root": str(folder / "study"),
        "arms": [
            {"name": "pretrained", "job_type": "pretrained"},
            {
                "name": "scratch",
                "job_type": "scratch",
                "overrides": {
                    "model_name_or_path": None,
                    "scratch_preset": "minilm-l6-h384",
                    "tokenizer_name": "minilm",
                },
            },
        ],
    }
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump({**defaults, **spec}, sort_keys=False))
    return path


def test_plan_recipes_and_commands(tmp_path, capsys):
    study = load_study(
        write_study(tmp_path, overrides={"save_strategy": "steps"}, grid={"learning_rate": {"hi": 5e-4, "lo": 1e-4}})
    )
    assert [a.name for a in study.arms] == ["pretrained_hi", "pretrained_lo", "scratch_hi", "scratch_lo"]
    assert study.baseline == "pretrained_hi" and study.report_dir == tmp_path / "study" / "report"
    scratch = study.arms[3]
    # null removed model_name_or_path; per-job keys (seed, output_dir) go on the command line instead.
    assert scratch.recipe == {
        "learning_rate": 1e-4,
        "wandb_tags": ["mnli"],
        "save_strategy": "steps",
        "scratch_preset": "minilm-l6-h384",
        "tokenizer_name": "minilm",
    }
    jobs = study.jobs()
    # Seed by seed: every arm once before any arm twice.
    assert [j.run_name for j in jobs[:5]] == [
        "pretrained_hi-seed1",
        "pretrained_lo-seed1",
        "scratch_hi-seed1",
        "scratch_lo-seed1",
        "pretrained_hi-seed2",
    ]
    assert jobs[3].output_dir == tmp_path / "study" / "scratch_lo" / "seed1"
    command = study_jobs.job_command(study, jobs[3])
    assert command[1:4] == ["launch", "--config_file", str(REPO / "configs" / "accelerate_cpu.yaml")]
    assert command[4:] == [
        str(REPO / "scripts" / "run_mnli.py"),
        str(jobs[3].output_dir / "job_recipe.yaml"),
        "--output_dir",
        str(jobs[3].output_dir),
        "--seed",
        "1",
        "--run_name",
        "scratch_lo-seed1",
        "--wandb_group",
        "tiny-study",
        "--wandb_job_type",
        "scratch",
        "--resume_from_checkpoint",
        "auto",
    ]

    assert studies.main([str(study.path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "4 arms × 2 seeds = 8 jobs, 0 finished" in out and out.count("would run") == 8
    assert not (tmp_path / "study").exists()  # a dry run writes nothing

    # A part of the study: the same job folders, only the arms and seeds asked for.
    assert studies.main([str(study.path), "--dry-run", "--arms", "pretrained_hi,scratch_lo", "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 arms × 1 seeds = 2 jobs" in out and out.count("would run") == 2
    assert "scratch_lo-seed2: would run" in out and str(tmp_path / "study" / "scratch_lo" / "seed2") in out
    with pytest.raises(StudyError, match="--arms must include the baseline arm 'pretrained_hi'"):
        studies.main([str(study.path), "--dry-run", "--arms", "scratch_lo"])
    with pytest.raises(StudyError, match="--arms: 'scratch' is not an arm; the arms are: pretrained_hi, "):
        studies.main([str(study.path), "--dry-run", "--arms", "pretrained_hi,scratch"])
    with pytest.raises(StudyError, match=r"--seeds: 3 is not a seed of the study \(\[1, 2\]\)"):
        studies.main([str(study.path), "--dry-run", "--seeds", "3"])


def test_job_recipe_file_parses_and_keeps_its_wandb_run_id(tmp_path):
    from transformers import TrainingArguments

    from pipelines.arguments import ModelArguments, TrackingArguments, parse_recipe
    from pipelines.tasks.mnli import MnliDataArguments

    study = load_study(write_study(tmp_path))
    job = study.jobs()[1]  # scratch, seed 1
    env = study_jobs.prepare_job(study, job)
    again = study_jobs.prepare_job(study, job)
    assert env["WANDB_RUN_ID"] == again["WANDB_RUN_ID"] and env["WANDB_RESUME"] == "allow"  # one W&B run per job
    assert json.loads((job.output_dir / "study_job.json").read_text())["attempts"] == 2
    argv = study_jobs.job_command(study, job)[5:]
    types = (ModelArguments, MnliDataArguments, TrackingArguments, TrainingArguments)
    model_args, _, tracking_args, training_args, _ = parse_recipe(types, argv)
    assert model_args.scratch_preset == "minilm-l6-h384" and model_args.model_name_or_path is None
    assert training_args.seed == 1 and training_args.output_dir == str(job.output_dir)
    assert tracking_args.wandb_group == "tiny-study" and tracking_args.wandb_tags == ["mnli", "tiny-study", "scratch"]


def test_finished_job_with_a_changed_recipe_is_skipped_with_a_warning(tmp_path, caplog):
    study = load_study(write_study(tmp_path))
    job = study.jobs()[0]
    study_jobs.prepare_job(study, job)
    (job.output_dir / "all_results.json").write_text("{}")
    study_jobs.check_finished_recipe(study, job)
    # Unchanged: silent. Only our own records count: a W&B service left over from an earlier in-process run of the
    # suite can log its own shutdown here.
    assert not [r for r in caplog.records if r.name.startswith("pipelines")]
    job.arm.recipe["learning_rate"] = 3e-4
    study_jobs.check_finished_recipe(study, job)
    assert "pretrained-seed1 finished with another recipe (changed: learning_rate)" in caplog.text


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"seed": [1]}, "unknown key 'seed'. Did you mean 'seeds'"),
        ({"recipe": "nowhere.yaml"}, "recipe 'nowhere.yaml' not found"),
        ({"script": "scripts/nope.py"}, "script 'scripts/nope.py' not found"),
        ({"baseline": "bert"}, "baseline 'bert' is not an arm; the arms are: pretrained, scratch"),
        ({"seeds": [1, "two"]}, "'seeds' must be a list of integers"),
        ({"arms": [{"name": "a"}, {"name": "a"}]}, "two arms are named 'a'"),
        ({"arms": [{"name": "a", "overide": {}}]}, "arms\\[0\\]: unknown key 'overide'. Did you mean 'overrides'"),
        (
            {"arms": [{"name": "s", "overrides": {"scratch_preset": "tiny"}}]},
            "arm 's' sets both model_name_or_path and scratch_preset .*'model_name_or_path: null'",
        ),
        ({"grid": {"learning_rate": []}}, "grid 'learning_rate' must be a non-empty list"),
    ],
)
def test_study_file_errors_name_the_problem(tmp_path, spec, message):
    with pytest.raises(StudyError, match=message):
        load_study(write_study(tmp_path, **spec))


def test_shipped_studies(monkeypatch):
    monkeypatch.chdir(REPO)  # study paths are relative to the repository root
    files = sorted((REPO / "configs" / "studies").glob("*.yaml"))
    assert {f.stem for f in files} >= {
        "mnli_pretrained_vs_scratch",
        "mnli_pretrained_vs_scratch_cpu",
        "qa_ablation_korquad",
        "qa_ablation_korquad_cpu",
    }
    for file in files:
        assert file.read_text().splitlines()[0] == f"# python scripts/run_study.py configs/studies/{file.name}", file
        study = load_study(file.relative_to(REPO))  # checks that the script, launch config and recipes exist
        for arm in study.arms:
            assert (arm.recipe.get("model_name_or_path") is None) != (arm.recipe.get("scratch_preset") is None), (
                arm.name
            )
    mnli = load_study("configs/studies/mnli_pretrained_vs_scratch_cpu.yaml")
    assert [a.name for a in mnli.arms] == ["pretrained", "scratch"] and mnli.seeds == [42, 43]
    assert (
        mnli.arms[1].recipe["scratch_preset"] == "minilm-l6-h384" and mnli.arms[1].recipe["tokenizer_name"] == "minilm"
    )
    qa = load_study("configs/studies/qa_ablation_korquad_cpu.yaml")
    assert [a.name for a in qa.arms] == [
        f"{preset}_{lr}" for preset in ("small-3l-4h", "small-6l-4h", "small-6l-8h") for lr in ("lr5e-4", "lr1e-4")
    ]
    assert {a.recipe["learning_rate"] for a in qa.arms} == {5e-4, 1e-4}


def test_missing_qa_recipe_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = yaml.safe_load((REPO / "configs" / "studies" / "qa_ablation_korquad_cpu.yaml").read_text())
    spec["script"] = str(REPO / spec["script"])
    spec["launch_config"] = str(REPO / spec["launch_config"])
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(StudyError, match="recipe 'configs/qa/korquad_small_cpu.yaml' not found .* repository root"):
        load_study("study.yaml")


# --------------------------------------------------------------------------------------------------------------
# A real study, killed in the middle of a job, then resumed
# --------------------------------------------------------------------------------------------------------------

MAX_STEPS = 40  # after the first checkpoint, 30 more steps (seconds) leave time to kill the job mid-way
SAVE_STEPS = 10


@pytest.mark.slow
def test_study_end_to_end_with_resume(tmp_path, data_dir, tiny_bert_dir):
    small = tmp_path / "data"
    small.mkdir()
    for split, n in (("train", 64), ("validation_matched", 24), ("validation_mismatched", 24)):
        lines = (data_dir / "mnli" / f"{split}.jsonl").read_text().splitlines()[:n]
        (small / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    recipe = {
        "model_name_or_path": str(tiny_bert_dir),
        "data_dir": str(small),
        "max_seq_length": 64,
        "max_steps": MAX_STEPS,
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 32,
        "logging_steps": 10,
        "save_strategy": "steps",
        "save_steps": SAVE_STEPS,
        "report_to": "wandb",
        "wandb_project": "pipelines-tests",
    }
    # Plain `python script` (launch_config: null) instead of `accelerate launch`: the same jobs, 10 s less start-up
    # each. The accelerate command itself is checked in test_plan_recipes_and_commands.
    study_file = write_study(
        tmp_path,
        base_recipe=recipe,
        launch_config=None,
        arms=[
            {"name": "fast", "job_type": "fast", "overrides": {"learning_rate": 3e-3}},
            {"name": "slow", "job_type": "slow", "overrides": {"learning_rate": 1e-5}},
        ],
    )
    command = [sys.executable, str(REPO / "scripts" / "run_study.py"), str(study_file)]
    root = tmp_path / "study"
    first, killed = root / "fast" / "seed1", root / "slow" / "seed1"

    # First attempt: let the first job finish and the second save a checkpoint, then kill the study and its job.
    log = (tmp_path / "first.log").open("w")
    process = subprocess.Popen(
        command, cwd=tmp_path, env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.time() + 300
    while not complete_checkpoint(killed, SAVE_STEPS) and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    log.close()
    first_log = (tmp_path / "first.log").read_text()
    assert (first / "all_results.json").is_file(), first_log[-3000:]
    assert complete_checkpoint(killed, SAVE_STEPS) and not (killed / "all_results.json").is_file(), first_log[-3000:]
    first_finished_at = (first / "all_results.json").stat().st_mtime

    # Second attempt: the finished job is skipped, the killed one resumes from its checkpoint, the rest run.
    result = subprocess.run(command, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "[1/4] fast-seed1: finished, skipping" in result.stdout
    assert "[2/4] slow-seed1: running, resuming from checkpoint-" in result.stdout
    assert (first / "all_results.json").stat().st_mtime == first_finished_at
    for job_dir in (root / arm / f"seed{seed}" for arm in ("fast", "slow") for seed in (1, 2)):
        assert (job_dir / "all_results.json").is_file(), job_dir

    job_log = (killed / "study_job.log").read_text()
    assert job_log.count("=== ") == 2 and "Resuming from" in job_log and f"checkpoint-{SAVE_STEPS}" in job_log
    assert json.loads((killed / "trainer_state.json").read_text())["global_step"] == MAX_STEPS
    record = json.loads((killed / "study_job.json").read_text())
    assert record["attempts"] == 2
    # Both attempts logged to the same W&B run (same id), so the job is one run in W&B.
    offline_runs = sorted((killed / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 2 and all(p.name.endswith(record["wandb_run_id"]) for p in offline_runs)
    run_info = json.loads((killed / "run_info.json").read_text())
    assert run_info["group"] == "tiny-study" and run_info["job_type"] == "slow" and run_info["seed"] == 1

    summary = json.loads((root / "report" / "summary.json").read_text())
    assert {arm: data["seeds"] for arm, data in summary["arms"].items()} == {"fast": [1, 2], "slow": [1, 2]}
    assert summary["baseline"] == "fast" and summary["title"] == "Study tiny-study"
    assert (root / "report" / "report.html").is_file() and (root / "report" / "loss_curves.png").is_file()
