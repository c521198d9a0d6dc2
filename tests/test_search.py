"""Searches in a study: the search section, two real worker processes sharing one SQLite Optuna study, the chosen
values read by the arm's jobs, and the search table and plot in the report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, subprocess_env, write_tiny_mnli

from pipelines import search
from pipelines.study import StudyError, load_study
from pipelines.tracking import find_offline_runs, read_offline_run

optuna = pytest.importorskip("optuna")


def write_search_study(tmp_path: Path, model_dir: Path, data: Path, **search_spec) -> Path:
    recipe = {
        "model_name_or_path": str(model_dir),
        "data_dir": str(data),
        "max_seq_length": 32,
        "max_steps": 2,
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 16,
        "save_strategy": "no",
        "report_to": "none",
        "learning_rate": 1e-4,
    }
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(recipe))
    study = {
        "name": "tiny-search",
        "script": str(REPO / "scripts" / "run_mnli.py"),
        "launch_config": None,
        "recipe": str(tmp_path / "base.yaml"),
        "seeds": [1],
        "output_root": str(tmp_path / "study"),
        "arms": [{"name": "tiny", "job_type": "tiny"}],
        "search": {
            "n_trials": 3,
            "objective": "eval_heldout_accuracy",
            "overrides": {"heldout_train_samples": 8},
            "space": {"learning_rate": {"low": 1e-5, "high": 1e-2, "log": True}, "warmup_steps": [0.0, 0.1]},
            **search_spec,
        },
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"overrides": {}}, "arm 'tiny' would measure 'eval_heldout_accuracy' on dev.*heldout_train_samples"),
        ({"arms": ["big"]}, "search.arms: 'big' is not an arm; the arms are: tiny"),
        (
            {"space": {"learning_rate": {"low": 1e-3, "high": 1e-4}}},
            "search.space.learning_rate: low and high are numbers with low < high",
        ),
        ({"space": {"learning_rate": {"min": 1, "max": 2}}}, "search.space.learning_rate: a range"),
        ({"n_trial": 3}, "search: unknown key 'n_trial'. Did you mean 'n_trials'"),
        ({"direction": "up"}, "search.direction is maximize or minimize"),
    ],
)
def test_search_section_errors_name_the_problem(tmp_path, spec, message):
    path = write_search_study(tmp_path, tmp_path, tmp_path, **spec)
    with pytest.raises(StudyError, match=message):
        load_study(path)


def test_search_defaults_and_best_values_reach_the_arm(tmp_path):
    study = load_study(write_search_study(tmp_path, tmp_path, tmp_path))
    spec = study.search
    assert spec.storage == f"sqlite:///{tmp_path / 'study' / 'search' / 'search.db'}" and spec.arms == ["tiny"]
    assert study.arms[0].recipe["learning_rate"] == 1e-4  # no search result yet: the recipe's own value
    search.best_file(spec, "tiny").parent.mkdir(parents=True)
    search.best_file(spec, "tiny").write_text(yaml.safe_dump({"params": {"learning_rate": 3e-3, "warmup_steps": 0.1}}))
    arm = load_study(study.path).arms[0]
    assert arm.recipe["learning_rate"] == 3e-3 and arm.recipe["warmup_steps"] == 0.1
    assert "heldout_train_samples" not in arm.recipe  # the search's overrides are for its trials only


@pytest.mark.slow
def test_two_workers_share_one_sqlite_search(tmp_path, data_dir, tiny_bert_dir):
    data = write_tiny_mnli(tmp_path / "data", data_dir)
    study_file = write_search_study(tmp_path, tiny_bert_dir, data)
    spec = yaml.safe_load(study_file.read_text())
    spec["search"]["overrides"]["report_to"] = "wandb"  # trials' W&B runs: the group and the trial-number tags
    spec["search"]["overrides"]["wandb_project"] = "pipelines-tests"
    study_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    worker = [sys.executable, str(REPO / "scripts" / "run_study.py"), str(study_file), "--search-only"]

    # Two real worker processes on one SQLite study, started together.
    logs = [(tmp_path / f"worker{k}.log").open("w") for k in range(2)]
    processes = [
        subprocess.Popen(worker, cwd=tmp_path, env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT)
        for log in logs
    ]
    statuses = [p.wait(timeout=600) for p in processes]
    for log in logs:
        log.close()
    outputs = [(tmp_path / f"worker{k}.log").read_text() for k in range(2)]
    assert statuses == [0, 0], "\n".join(o[-3000:] for o in outputs)

    db = tmp_path / "study" / "search" / "search.db"
    stored = optuna.load_study(study_name="tiny-search/tiny", storage=f"sqlite:///{db}")
    complete = [t for t in stored.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) >= 3 and len({t.number for t in complete}) == len(complete)
    assert len({t.user_attrs["worker"] for t in complete}) == 2  # both workers ran trials of the one search
    for trial in complete:
        folder = tmp_path / "study" / "search" / "tiny" / trial.user_attrs["folder"]
        results = json.loads((folder / "all_results.json").read_text())
        assert trial.value == results["eval_heldout_accuracy"] and "eval_matched_accuracy" not in results
        assert (
            yaml.safe_load((folder / "job_recipe.yaml").read_text())["learning_rate"] == trial.params["learning_rate"]
        )
        [run] = [read_offline_run(p)["run"] for p in find_offline_runs(folder)]
        assert run["group"] == "tiny-search" and run["job_type"] == "search-tiny"
        assert {"search", f"trial-{trial.number}"} <= set(run["tags"])

    # The worker that finished the last trial chose the best values (the arm's jobs read them, see
    # test_search_defaults_and_best_values_reach_the_arm) and printed the table.
    best = yaml.safe_load((tmp_path / "study" / "search" / "tiny" / "best.yaml").read_text())
    assert best["trial"] == stored.best_trial.number and best["params"] == stored.best_trial.params
    assert (
        sum("| trial | learning_rate | warmup_steps | eval_heldout_accuracy | state | folder |" in o for o in outputs)
        >= 1
    )
    assert load_study(study_file).arms[0].recipe["learning_rate"] == best["params"]["learning_rate"]

    # The report's search section: the table, best first, and the objective against each parameter.
    study = load_study(study_file)
    study.report_dir.mkdir(parents=True)
    search.add_search_to_report(study)
    section = (study.report_dir / "search.md").read_text()
    assert "## Hyperparameter search" in section and f"| {best['trial']} (best) |" in section
    assert (study.report_dir / "search_tiny.png").stat().st_size > 1000


def test_a_trial_stopped_by_ctrl_c_is_run_again_in_its_folder(tmp_path):
    study = load_study(write_search_study(tmp_path, tmp_path, tmp_path))
    stored = search.open_search(study.search, study, "tiny")
    distributions = {"learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True)}
    stored.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL,
            params={"learning_rate": 3e-3},
            distributions=distributions,
            user_attrs={"folder": "trial-0", "interrupted": True},
        )
    )
    stored.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL,
            params={"learning_rate": 1e-3},
            distributions=distributions,
            user_attrs={"folder": "trial-1"},
        )
    )
    search.requeue_interrupted(stored)
    search.requeue_interrupted(stored)  # once only
    waiting = stored.get_trials(states=(optuna.trial.TrialState.WAITING,))
    # The queued trial suggests the same values (fixed_params) and runs in trial-0, resuming its checkpoint.
    assert [(t.system_attrs["fixed_params"], t.user_attrs) for t in waiting] == [
        ({"learning_rate": 3e-3}, {"folder": "trial-0", "resumes": 0})
    ]


def test_report_only_writes_the_search_section_before_any_study_job(tmp_path, capsys):
    from pipelines.study import main

    study_file = write_search_study(tmp_path, tmp_path, tmp_path)
    assert main([str(study_file), "--report-only"]) == 1 and not (tmp_path / "study").exists()  # no search yet: nothing
    study = load_study(study_file)
    stored = search.open_search(study.search, study, "tiny")
    distributions = {
        "learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True),
        "warmup_steps": optuna.distributions.CategoricalDistribution([0.0, 0.1]),
    }
    for number, (lr, warmup, accuracy) in enumerate([(1e-3, 0.0, 0.41), (3e-3, 0.1, 0.45), (1e-4, 0.1, 0.38)]):
        stored.add_trial(
            optuna.trial.create_trial(
                params={"learning_rate": lr, "warmup_steps": warmup},
                value=accuracy,
                distributions=distributions,
                user_attrs={"folder": f"trial-{number}"},
            )
        )
    assert main([str(study_file), "--report-only"]) == 1
    table = (study.report_dir / "search.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "trial |" not in line]
    assert rows == [
        "| 1 (best) | 0.003 | 0.1 | 0.45 | COMPLETE | trial-1 |",
        "| 0 | 0.001 | 0 | 0.41 | COMPLETE | trial-0 |",
        "| 2 | 0.0001 | 0.1 | 0.38 | COMPLETE | trial-2 |",
    ]
    assert (study.report_dir / "search_tiny.png").is_file() and "Search report:" in capsys.readouterr().out
