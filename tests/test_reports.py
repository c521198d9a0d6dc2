"""Comparison reports: the statistics on hand-computed cases, the report logic on hand-made prediction files,
and whole reports built from real tiny MNLI runs (their output folders and their offline W&B files)."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, subprocess_env

from pipelines import reports, stats
from pipelines.reports import Run

# --------------------------------------------------------------------------------------------------------------
# Statistics, checked against values worked out by hand
# --------------------------------------------------------------------------------------------------------------


def test_mean_std():
    mean, std = stats.mean_std([1, 2, 3, 4])
    assert mean == 2.5
    assert std == pytest.approx(math.sqrt(5 / 3))  # squared deviations 2.25+0.25+0.25+2.25 = 5, over n-1 = 3
    assert stats.mean_std([0.7]) == (0.7, None)  # one seed: no spread to estimate


def correctness_vectors(both: int, baseline_only: int, other_only: int, neither: int):
    """Two aligned correctness vectors with the given 2x2 table."""
    baseline = [1] * both + [1] * baseline_only + [0] * other_only + [0] * neither
    other = [1] * both + [0] * baseline_only + [1] * other_only + [0] * neither
    return baseline, other


def test_mcnemar_exact_on_a_small_table():
    # b = 10, c = 2: 12 disagreements, below 25, so the exact binomial test.
    # P(X <= 2 | n=12, p=1/2) = (1 + 12 + 66) / 4096, doubled: 158 / 4096.
    result = stats.mcnemar(*correctness_vectors(both=50, baseline_only=10, other_only=2, neither=30))
    assert (result.baseline_only, result.other_only, result.method) == (10, 2, "exact")
    assert result.p_value == pytest.approx(158 / 4096)
    assert result.statistic == pytest.approx((10 - 2 - 1) ** 2 / 12)


def test_mcnemar_chi_square_on_a_large_table():
    # b = 30, c = 15: chi-square with continuity correction (|30 - 15| - 1)^2 / 45 = 196 / 45, 1 degree of freedom,
    # whose survival function is erfc(sqrt(x / 2)).
    result = stats.mcnemar(*correctness_vectors(both=100, baseline_only=30, other_only=15, neither=55))
    assert result.method == "chi-square"
    assert result.statistic == pytest.approx(196 / 45)
    assert result.p_value == pytest.approx(math.erfc(math.sqrt(196 / 45 / 2)))


def test_mcnemar_without_disagreements():
    result = stats.mcnemar([1, 0, 1], [1, 0, 1])
    assert (result.baseline_only, result.other_only, result.p_value) == (0, 0, 1.0)


def test_bootstrap_of_a_constant_difference_is_that_difference():
    baseline = np.linspace(0, 1, 50)
    result = stats.paired_bootstrap(baseline, baseline + 0.25, n_resamples=500)
    assert result.difference == pytest.approx(0.25)
    assert result.ci_low == pytest.approx(0.25) and result.ci_high == pytest.approx(0.25)
    assert result.p_value == 0.0


def test_bootstrap_interval_matches_the_normal_approximation():
    # Differences are 1 on half the examples and 0 on the other half: mean 0.5, standard error 0.5 / sqrt(n),
    # so the 95% interval is close to 0.5 ± 1.96 * 0.5 / sqrt(2000) = 0.5 ± 0.0219.
    n = 2000
    baseline = np.zeros(n)
    other = np.tile([1.0, 0.0], n // 2)
    result = stats.paired_bootstrap(baseline, other, n_resamples=4000, seed=1)
    half_width = 1.96 * 0.5 / math.sqrt(n)
    assert result.difference == pytest.approx(0.5)
    assert result.ci_low == pytest.approx(0.5 - half_width, abs=0.003)
    assert result.ci_high == pytest.approx(0.5 + half_width, abs=0.003)
    assert result.p_value < 0.001


def test_bootstrap_averages_seeds_per_example():
    # Baseline seeds [1,0,1,0] and [1,1,1,1] average to [1, .5, 1, .5] (mean .75); the other arm scores 0 everywhere.
    result = stats.paired_bootstrap([[1, 0, 1, 0], [1, 1, 1, 1]], [[0, 0, 0, 0]], n_resamples=200)
    assert result.baseline_mean == pytest.approx(0.75) and result.other_mean == 0.0
    assert result.difference == pytest.approx(-0.75)
    assert -1.0 <= result.ci_low <= -0.5 and result.ci_high <= -0.5


# --------------------------------------------------------------------------------------------------------------
# Report logic on hand-made prediction files
# --------------------------------------------------------------------------------------------------------------


def mnli_run(
    name: str, arm: str, seed: int, predicted: list[int], gold: list[int], data_dir: Path | None = None
) -> Run:
    rows = [
        {"idx": i, "gold": g, "predicted": p, "probabilities": [1 / 3] * 3}
        for i, (g, p) in enumerate(zip(gold, predicted))
    ]
    accuracy = sum(g == p for g, p in zip(gold, predicted)) / len(gold)
    recipe = {"data_dir": str(data_dir)} if data_dir else {}
    return Run(
        name=name,
        source=name,
        info={"task": "mnli", "seed": seed, "recipe": recipe},
        results={"eval_matched_accuracy": accuracy},
        history=[],
        predictions={"validation_matched": rows},
        arm=arm,
    )


def test_comparison_counts_and_examples_with_text(tmp_path):
    data_dir = tmp_path / "mnli"
    data_dir.mkdir()
    pairs = [{"premise": f"Premise {i}.", "hypothesis": f"Hypothesis {i}.", "label": i % 3, "idx": i} for i in range(6)]
    for split in ("train", "validation_matched", "validation_mismatched"):
        (data_dir / f"{split}.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    gold = [0, 1, 2, 0, 1, 2]
    # Example 0: baseline right in both seeds, other wrong in both.
    # Example 1: other right in both, baseline wrong in both.
    # Example 2: baseline right in one seed only, so in neither list.
    base = [
        mnli_run("b1", "base", 1, [0, 0, 2, 0, 1, 2], gold, data_dir),
        mnli_run("b2", "base", 2, [0, 2, 0, 0, 1, 2], gold, data_dir),
    ]
    other = [mnli_run("o1", "other", 1, [1, 1, 2, 0, 1, 2], gold), mnli_run("o2", "other", 2, [2, 1, 2, 0, 1, 2], gold)]
    texts = reports.load_texts(base[0], "validation_matched")
    comparison = reports.compare_arms("base", base, "other", other, "validation_matched", 200, 10, texts)

    seed1 = comparison["mcnemar"][0]
    assert seed1["seeds"] == [1, 1] and (seed1["baseline_only"], seed1["other_only"]) == (1, 1)
    seed2 = comparison["mcnemar"][1]
    assert (seed2["baseline_only"], seed2["other_only"]) == (1, 2)  # example 0; examples 1 and 2
    accuracy = comparison["differences"]["accuracy"]
    assert accuracy["baseline_mean"] == pytest.approx((5 / 6 + 4 / 6) / 2)
    assert accuracy["other_mean"] == pytest.approx(5 / 6)

    only_base = comparison["examples"]["baseline_right_arm_wrong"]
    assert only_base["count"] == 1
    assert only_base["shown"][0] == {
        "key": 0,
        "text": "Premise 0. ⟶ Hypothesis 0.",
        "gold": "entailment",
        "baseline_predicted": ["entailment", "entailment"],
        "arm_predicted": ["neutral", "contradiction"],
    }
    only_other = comparison["examples"]["arm_right_baseline_wrong"]
    assert only_other["count"] == 1 and only_other["shown"][0]["key"] == 1


def test_qa_rows_score_exact_match_and_f1():
    from pipelines.tasks.qa import KORQUAD

    row = {
        "id": "q1",
        "question": "누가?",
        "gold_answers": ["세종"],
        "predicted": "세종대왕",
        "exact_match": 0.0,
        "f1": 66.7,
    }
    assert reports.example_score(row, KORQUAD) == ("q1", {"exact_match": 0.0, "f1": 66.7}, False)
    assert reports.example_score(dict(row, exact_match=100.0, f1=100.0), KORQUAD)[2] is True
    assert reports.example_score(dict(row, exact_match=None), KORQUAD) is None  # unscored rows are skipped


def test_default_arm_names_use_job_type_model_and_differing_keys():
    def run(job_type, lr, seed):
        recipe = {"model_name_or_path": "/x/tiny", "learning_rate": lr, "seed": seed, "output_dir": f"o{seed}"}
        return Run(
            name="r",
            source="r",
            info={"job_type": job_type, "model": "/x/tiny", "seed": seed, "recipe": recipe},
            results={},
            history=[],
        )

    runs = [run("scratch", 1e-3, 1), run("scratch", 1e-3, 2), run("scratch", 1e-4, 1)]
    reports.name_arms(runs)
    assert [r.arm for r in runs] == [
        "scratch tiny learning_rate=0.001",
        "scratch tiny learning_rate=0.001",
        "scratch tiny learning_rate=0.0001",
    ]


def test_sources_and_unreadable_runs(tmp_path):
    assert reports.parse_source("pretrained=outputs/a/seed42") == ("pretrained", "outputs/a/seed42")
    assert reports.parse_source("outputs/a/seed42") == (None, "outputs/a/seed42")
    (tmp_path / "killed").mkdir()
    with pytest.raises(reports.ReportError, match="no all_results.json"):
        reports.read_run(str(tmp_path / "killed"))
    with pytest.raises(reports.ReportError, match="no such run folder"):
        reports.read_run(str(tmp_path / "nowhere"))


def test_wandb_history_rows_become_trainer_rows():
    rows = [
        {"train/loss": 1.1, "train/global_step": 2, "train/epoch": 0.5, "_step": 0},
        {"eval/matched_accuracy": 0.4, "train/global_step": 4, "eval_matched/confusion_matrix/nrows": 3},
    ]
    assert reports.history_from_wandb(rows) == [
        {"loss": 1.1, "step": 2, "epoch": 0.5},
        {"eval_matched_accuracy": 0.4, "step": 4},
    ]


# A real offline W&B run, logged in its own process (W&B keeps process-wide state).
WANDB_OFFLINE_RUN = """
import sys, wandb
config = {"learning_rate": 0.5, "run_info": {"parameters": {"total": 7}}}
run = wandb.init(dir=sys.argv[1], mode="offline", project="p", group="g", job_type="j", tags=["a", "b"], config=config)
for step in (1, 2):
    wandb.log({"train/loss": 1.0 / step, "train/global_step": step})
run.summary["eval_matched_accuracy"] = 0.75
wandb.finish()
"""


def test_an_offline_wandb_run_is_read_back_with_wandbs_own_reader(tmp_path):
    """tracking.read_offline_run reads the .wandb log through `wandb leet inspect`; a report reads the same run."""
    from pipelines.tracking import find_offline_runs, read_offline_run

    command = [sys.executable, "-c", WANDB_OFFLINE_RUN, str(tmp_path)]
    subprocess.run(command, env=subprocess_env(), check=True, timeout=300)
    (folder,) = find_offline_runs(tmp_path)
    run = read_offline_run(folder)
    assert run["run"]["group"] == "g" and run["run"]["job_type"] == "j" and run["run"]["tags"] == ["a", "b"]
    assert run["config"]["learning_rate"] == 0.5 and run["config"]["run_info"]["parameters"]["total"] == 7
    assert [row["train/loss"] for row in run["history"]] == [1.0, 0.5]
    assert run["summary"]["eval_matched_accuracy"] == 0.75
    report_run = reports.read_run(str(folder))
    assert report_run.history == [{"loss": 1.0, "step": 1}, {"loss": 0.5, "step": 2}]
    assert report_run.results == {"eval_matched_accuracy": 0.75} and report_run.info["job_type"] == "j"
    (log,) = folder.glob("run-*.wandb")
    log.write_bytes(b"not a run log")
    with pytest.raises(reports.ReportError, match="wandb leet inspect"):
        reports.read_run(str(folder))


# --------------------------------------------------------------------------------------------------------------
# Reports from real tiny runs: 2 arms (learning rates) x 2 seeds of a tiny BERT on real MNLI rows
# --------------------------------------------------------------------------------------------------------------

ARMS = {"fast": 3e-3, "slow": 1e-5}
SEEDS = [1, 2]

# Runs the jobs one after another in one Python process (one import of torch/transformers for all four).
# W&B keeps process-wide settings, so it is torn down between runs and each run logs into its own folder.
RUN_JOBS = """
import json, os, sys
import wandb
from pipelines.tasks import mnli
for argv in json.loads(sys.argv[1]):
    for key in [k for k in os.environ if k.startswith("WANDB_") and k != "WANDB_SILENT"]:
        del os.environ[key]
    mnli.main(argv)
    wandb.teardown()
"""


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory, data_dir, tiny_bert_dir) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("report-runs")
    small = root / "data"
    small.mkdir()
    for split, n in (("train", 64), ("validation_matched", 40), ("validation_mismatched", 30)):
        lines = (data_dir / "mnli" / f"{split}.jsonl").read_text().splitlines()[:n]
        (small / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    recipe = root / "tiny.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "model_name_or_path": str(tiny_bert_dir),
                "data_dir": str(small),
                "max_seq_length": 64,
                "max_steps": 8,
                "per_device_train_batch_size": 8,
                "per_device_eval_batch_size": 32,
                "logging_steps": 2,
                "eval_strategy": "steps",
                "eval_steps": 4,
                "report_to": "wandb",
                "wandb_project": "pipelines-tests",
                "wandb_group": "report-test",
            }
        )
    )
    folders = {arm: [root / arm / f"seed{seed}" for seed in SEEDS] for arm in ARMS}
    jobs = [
        [
            str(recipe),
            "--output_dir",
            str(folder),
            "--seed",
            str(seed),
            "--learning_rate",
            str(ARMS[arm]),
            "--wandb_job_type",
            arm,
        ]
        for arm in ARMS
        for seed, folder in zip(SEEDS, folders[arm])
    ]
    result = subprocess.run(
        [sys.executable, "-c", RUN_JOBS, json.dumps(jobs)],
        cwd=root,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return folders


def compare_main(argv: list[str]) -> int:
    """scripts/compare.py's main, imported from the script (the command line lives there)."""
    spec = importlib.util.spec_from_file_location("compare_script", REPO / "scripts" / "compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


def read_results(folder: Path) -> dict:
    return json.loads((folder / "all_results.json").read_text())


def read_correct(folder: Path, split: str) -> list[bool]:
    rows = [json.loads(line) for line in (folder / f"predictions_{split}.jsonl").read_text().splitlines()]
    return [r["gold"] == r["predicted"] for r in rows]


def assert_png(path: Path):
    from PIL import Image

    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 400 and image.size[1] > 200


@pytest.mark.slow
def test_report_from_run_folders(tiny_runs, tmp_path):
    out = tmp_path / "report"
    sources = [(arm, str(folder)) for arm, folders in tiny_runs.items() for folder in folders]
    summary = reports.build_report(sources, out, title="Tiny", n_resamples=500)

    for name in (
        "report.md",
        "report.html",
        "summary.json",
        "loss_curves.png",
        "eval_metrics.png",
        "final_metrics.png",
    ):
        assert (out / name).is_file(), name
    for name in ("loss_curves.png", "eval_metrics.png", "final_metrics.png"):
        assert_png(out / name)
    assert json.loads((out / "summary.json").read_text())["arms"].keys() == {"fast", "slow"}

    # Final metrics: mean and sample std of the runs' all_results.
    for arm, folders in tiny_runs.items():
        for key in ("eval_matched_accuracy", "eval_mismatched_accuracy", "train_loss"):
            values = [read_results(f)[key] for f in folders]
            metric = summary["arms"][arm]["metrics"][key]
            assert metric["values"] == values
            assert metric["mean"] == pytest.approx(np.mean(values))
            assert metric["std"] == pytest.approx(np.std(values, ddof=1))

    # Paired statistics agree with the prediction files and with all_results.
    assert summary["baseline"] == "fast"
    assert [c["split"] for c in summary["comparisons"]] == ["validation_matched", "validation_mismatched"]
    for comparison in summary["comparisons"]:
        split = comparison["split"]
        prefix = "eval_" + split.replace("validation_", "")
        difference = comparison["differences"]["accuracy"]
        expected = np.mean([read_results(f)[f"{prefix}_accuracy"] for f in tiny_runs["slow"]]) - np.mean(
            [read_results(f)[f"{prefix}_accuracy"] for f in tiny_runs["fast"]]
        )
        assert difference["difference"] == pytest.approx(expected)
        assert difference["ci_low"] <= difference["difference"] <= difference["ci_high"]
        for test, fast, slow in zip(comparison["mcnemar"], tiny_runs["fast"], tiny_runs["slow"]):
            fast_correct, slow_correct = read_correct(fast, split), read_correct(slow, split)
            assert test["baseline_only"] == sum(f and not s for f, s in zip(fast_correct, slow_correct))
            assert test["other_only"] == sum(s and not f for f, s in zip(fast_correct, slow_correct))

    markdown = (out / "report.md").read_text()
    assert "## Final metrics (mean ± std over seeds)" in markdown and "![" in markdown and "slow − fast" in markdown
    assert markdown.count("data:image/png;base64") == 0
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 3


@pytest.mark.slow
def test_compare_command_groups_runs_by_job_type(tiny_runs, tmp_path, capsys):
    out = tmp_path / "report"
    folders = [str(f) for folders in tiny_runs.values() for f in folders]
    assert compare_main([*folders, "--output-dir", str(out), "--bootstrap-resamples", "200", "--examples", "3"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["arms"]) == ["fast tiny-bert0 learning_rate=0.003", "slow tiny-bert0 learning_rate=1e-05"]
    assert all(len(arm["seeds"]) == 2 for arm in summary["arms"].values())
    assert summary["title"] == "Comparison: report-test"  # the runs' W&B group
    assert "report.html" in capsys.readouterr().out


@pytest.mark.slow
def test_report_names_the_minilm_caveat(tiny_runs, tmp_path):
    """An arm whose model is all-MiniLM-L6-v2 (by short name or its package folder) carries the contamination caveat."""
    from pipelines.hub import model_caveat, resolve_model_path

    assert model_caveat("minilm") and model_caveat(resolve_model_path("minilm")) == model_caveat("minilm")
    assert model_caveat("distilbert-base-uncased") is None and model_caveat(None) is None
    runs = {}
    for arm, folders in tiny_runs.items():
        runs[arm] = [tmp_path / arm / f.name for f in folders]
        for src, dst in zip(folders, runs[arm]):
            shutil.copytree(src, dst)
    for folder in runs["fast"]:
        info = json.loads((folder / "run_info.json").read_text())
        info.update(model="minilm", pretrained=True)
        (folder / "run_info.json").write_text(json.dumps(info))
    sources = [(arm, str(f)) for arm, folders in runs.items() for f in folders]
    reports.build_report(sources, tmp_path / "report", title="Caveat", n_resamples=100)
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Caveat (fast): all-MiniLM-L6-v2 is not a clean pretrained model" in text
    assert "Caveat (slow)" not in text


def test_report_from_offline_wandb_runs(tiny_runs, tmp_path):
    from pipelines.tracking import find_offline_runs

    out = tmp_path / "report"
    sources = []
    for arm, folders in tiny_runs.items():
        for folder in folders:
            (offline,) = find_offline_runs(folder)
            sources.append((arm, str(offline)))
    summary = reports.build_report(sources, out, n_resamples=200)
    for run, (arm, offline) in zip(summary["runs"], sources):
        results = read_results(Path(offline).parent.parent)
        assert run["metrics"]["eval_matched_accuracy"] == pytest.approx(results["eval_matched_accuracy"])
        assert run["job_type"] == arm and run["group"] == "report-test"
    # W&B files hold no per-example predictions: metrics and curves only, and the report says so.
    assert summary["comparisons"] == [] and "No per-example predictions" in summary["notes"][0]
    assert_png(out / "loss_curves.png")
    assert_png(out / "eval_metrics.png")


@pytest.mark.slow
def test_wandb_report_without_credentials_keeps_the_local_report(tiny_runs, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc with a W&B key
    out = tmp_path / "report"
    folders = [f"{arm}={f}" for arm, folders in tiny_runs.items() for f in folders]
    assert compare_main([*folders, "--output-dir", str(out), "--bootstrap-resamples", "100", "--wandb-report"]) == 1
    assert "needs W&B credentials" in capsys.readouterr().err
    assert (out / "report.html").is_file() and (out / "summary.json").is_file()


def test_compare_script_help():
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "compare.py"), "--help"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "--wandb-report" in result.stdout
