"""The compute curve of self-pretraining (pipelines/compute_curve.py, scripts/plot_compute_curve.py), from real tiny
runs: a 4-step pretraining that saves and evaluates at step 2, its checkpoint-2 and its final folder each fine-tuned
on MNLI with two seeds (a study's <arm>/seed<k> layout), a scratch arm of two seeds and one MiniLM run as the
reference. FLOPs and gates come from the pretraining folder, means and t-intervals from the runs' all_results.json."""

from __future__ import annotations

import json
import runpy
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import ONE_LAYER_SCRATCH, REPO, write_tiny_mnli
from scipy import stats
from test_hub_and_cards import make_qa_run

from pipelines.compute_curve import (
    CurveError,
    draw,
    metric_scale,
    pretraining_flops_per_step,
    read_curve,
    read_group,
    read_pretraining,
)
from pipelines.run_folder import RunFolder
from pipelines.tasks.mlm import main as run_pretraining
from pipelines.tasks.mnli import main as run_mnli
from pipelines.word_vectors import main as train_word_vectors

pytestmark = pytest.mark.slow
SEEDS = (1, 2)


@pytest.fixture(scope="module")
def tiny_pretraining(tmp_path_factory, minilm_path) -> Path:
    """Our `tiny` preset, 4 MLM steps on the QA fixture's contexts with MiniLM's tokenizer; checkpoint and held-out
    loss at step 2."""
    folder = tmp_path_factory.mktemp("curve-pretraining")
    squad = json.loads((REPO / "tests" / "fixtures" / "qa" / "tiny_squad.json").read_text())
    contexts = [p["context"] for article in squad["data"] for p in article["paragraphs"]]
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(contexts * 8) + "\n", encoding="utf-8")
    run_pretraining(
        [
            "--scratch_preset",
            "tiny",
            "--tokenizer_name",
            minilm_path,
            "--train_files",
            str(corpus),
            "--validation_split_percentage",
            "20",
            "--max_seq_length",
            "32",
            "--max_eval_samples",
            "8",
            "--output_dir",
            str(folder / "run"),
            "--cache_dir",
            str(folder / "cache"),
            "--report_to",
            "none",
            "--max_steps",
            "4",
            "--per_device_train_batch_size",
            "4",
            "--seed",
            "0",
            "--save_strategy",
            "steps",
            "--save_steps",
            "2",
            "--eval_strategy",
            "steps",
            "--eval_steps",
            "2",
        ]
    )
    return folder / "run"


@pytest.fixture(scope="module")
def study(tiny_pretraining, tmp_path_factory, data_dir) -> Path:
    """Fine-tuning runs in a study's layout: curve/{step2,final}/seed<k>, buys/{scratch,pretrained}/seed<k>."""
    root = tmp_path_factory.mktemp("curve-study")
    mnli = write_tiny_mnli(root / "mnli", data_dir, n_train=16, n_dev=16)
    starts = {
        "curve/step2": ["--model_name_or_path", str(tiny_pretraining / "checkpoint-2")],
        "curve/final": ["--model_name_or_path", str(tiny_pretraining)],
        "buys/scratch": ["--scratch_preset", "tiny", "--tokenizer_name", "minilm"],
    }
    jobs = [(arm, seed) for arm in starts for seed in SEEDS]
    for arm, seed in jobs + [("buys/pretrained", 1)]:
        start = starts.get(arm, ["--model_name_or_path", "minilm"])
        run_mnli(
            [
                *start,
                "--data_dir",
                str(mnli),
                "--max_seq_length",
                "32",
                "--max_steps",
                "2",
                "--per_device_train_batch_size",
                "8",
                "--per_device_eval_batch_size",
                "16",
                "--learning_rate",
                "1e-3",
                "--seed",
                str(seed),
                "--report_to",
                "none",
                "--output_dir",
                str(root / arm / f"seed{seed}"),
            ]
        )
    return root


def accuracy(run: Path) -> float:
    return 100 * json.loads((run / "all_results.json").read_text())["eval_matched_accuracy"]


def test_flops_per_step_come_from_the_pretraining_folder(tiny_pretraining):
    info = json.loads((tiny_pretraining / "run_info.json").read_text())
    config = json.loads((tiny_pretraining / "config.json").read_text())
    tokens = 4 * 32  # batch x block length, every block full (packed)
    body = 6 * info["parameters"]["non_embedding"] * tokens
    expected = body + 6 * config["hidden_size"] * config["vocab_size"] * 0.15 * tokens
    assert pretraining_flops_per_step(tiny_pretraining) == pytest.approx(expected)


def test_a_stopped_pretraining_run_is_read_from_its_checkpoints(tiny_pretraining, tmp_path):
    # A run stopped before its last step has run_info.json and its checkpoints, but no config, results or history.
    stopped = tmp_path / "stopped"
    shutil.copytree(tiny_pretraining, stopped)
    for name in ("all_results.json", "config.json", "log_history.json"):
        (stopped / name).unlink()
    assert pretraining_flops_per_step(stopped) == pytest.approx(pretraining_flops_per_step(tiny_pretraining))
    finished = [(e["step"], e["eval_loss"]) for e in RunFolder.read(tiny_pretraining).history if "eval_loss" in e]
    from_checkpoints = [(e["step"], e["eval_loss"]) for e in read_pretraining(stopped).history if "eval_loss" in e]
    assert (2, pytest.approx(dict(finished)[2])) in from_checkpoints  # the gate at checkpoint-2, once
    assert len({step for step, _ in from_checkpoints}) == len(from_checkpoints)
    with pytest.raises(CurveError, match="neither all_results.json"):
        read_pretraining(tmp_path)


def test_points_are_checkpoints_with_their_seeds(tiny_pretraining, study):
    points, scale = read_curve("mlm", tiny_pretraining, [study / "curve"], "eval_matched_accuracy")
    assert scale.label == "MNLI matched accuracy (%)" and scale.factor == 100
    assert [p.step for p in points] == [2, 4]  # checkpoint-2, then the run's own folder = its last step
    per_step = pretraining_flops_per_step(tiny_pretraining)
    history = RunFolder.read(tiny_pretraining).history
    for point, arm in zip(points, ("step2", "final")):
        assert point.flops == pytest.approx(point.step * per_step)
        values = [accuracy(study / "curve" / arm / f"seed{seed}") for seed in SEEDS]
        assert sorted(point.values) == pytest.approx(sorted(values))
        low, high = stats.t.interval(0.95, df=1, loc=np.mean(values), scale=stats.sem(values))
        interval = point.interval
        assert (interval.n, interval.mean) == (2, pytest.approx(np.mean(values)))
        assert (interval.low, interval.high) == (pytest.approx(low), pytest.approx(high))
        # The gate: the pretraining's held-out loss logged at that step (the last of them at step 4).
        logged = [e["eval_loss"] for e in history if e.get("step") == point.step and "eval_loss" in e]
        assert point.gate == ("eval_loss", pytest.approx(logged[-1]))

    reference, _ = read_group("minilm", [study / "buys" / "pretrained"], "eval_matched_accuracy")
    assert reference.values == [accuracy(study / "buys" / "pretrained" / "seed1")]
    assert reference.interval.low is None and "AllNLI" in reference.caveats[0]  # one seed: no interval
    with pytest.raises(CurveError, match="model_name_or_path None is not"):  # scratch runs are not a budget
        read_curve("mlm", tiny_pretraining, [study / "buys" / "scratch"], "eval_matched_accuracy")
    with pytest.raises(CurveError, match="no 'eval_f1'"):
        read_group("scratch", [study / "buys" / "scratch"], "eval_f1")
    with pytest.raises(CurveError, match="given twice"):
        read_group("scratch", [study / "buys" / "scratch", study / "buys" / "scratch" / "seed1"], "eval_f1")


def test_qa_scores_keep_their_0_to_100_scale(tmp_path_factory, tiny_bert_dir):
    qa_run = make_qa_run(tmp_path_factory, tiny_bert_dir)
    point, scale = read_group("scratch", [qa_run], "eval_f1")
    assert scale.label == "SQuAD v1.1 F1" and scale.factor == 1  # the task's title and metric name
    assert point.values == [json.loads((qa_run / "all_results.json").read_text())["eval_f1"]]
    assert metric_scale(RunFolder.read(qa_run), "eval_samples").label == "eval_samples"  # not a task metric: as stored


def test_the_command_writes_the_figure_and_the_table(tiny_pretraining, study, tmp_path, capsys):
    output, table_file = tmp_path / "curve.png", tmp_path / "curve.md"
    plot_main = runpy.run_path(str(REPO / "scripts" / "plot_compute_curve.py"))["main"]  # in-process: no second start
    plot_main(
        [
            "--metric",
            "eval_matched_accuracy",
            "--output",
            str(output),
            "--table",
            str(table_file),
            "--curve",
            f"mlm={tiny_pretraining}:{study / 'curve' / 'step2'}:{study / 'curve' / 'final'}",
            "--curve",
            f"mlm-early={tiny_pretraining}:{study / 'curve' / 'step2'}",
            "--scratch",
            str(study / "buys" / "scratch"),
            "--reference",
            f"minilm={study / 'buys' / 'pretrained'}",
        ]
    )
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = table_file.read_text()
    assert table in capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:]
    names = [row.split(" | ")[0].lstrip("| ") for row in rows]
    assert names == ["mlm", "mlm", "mlm-early", "scratch", "minilm (reference)*"]
    assert "eval_loss" in rows[0] and "AllNLI" in table

    curves = {
        name: read_curve(name, tiny_pretraining, [study / "curve" / arm], "eval_matched_accuracy")[0]
        for name, arm in (("mlm", "final"), ("mlm-early", "step2"))
    }
    scratch, scale = read_group("scratch", [study / "buys" / "scratch"], "eval_matched_accuracy")
    reference, _ = read_group("minilm", [study / "buys" / "pretrained"], "eval_matched_accuracy")
    figure = draw(curves, scratch, [reference], scale)
    axis = figure.axes[0]
    assert axis.get_xscale() == "log" and axis.get_ylabel() == "MNLI matched accuracy (%)"
    lines = {line.get_label(): line for line in axis.get_lines()}
    mlm, early = lines["mlm: mean of 2 seeds, 95% CI"], lines["mlm-early: mean of 2 seeds, 95% CI"]
    assert mlm.get_color() != early.get_color() and mlm.get_marker() != early.get_marker()
    # Scratch: a band over the whole width at its 95% interval.
    band = next(p for p in axis.patches if p.get_label().startswith("scratch"))
    ys = band.get_path().transformed(band.get_patch_transform()).vertices[:, 1]
    assert (ys.min(), ys.max()) == (pytest.approx(scratch.interval.low), pytest.approx(scratch.interval.high))
    bottom, top = axis.get_ylim()
    minilm = reference.values[0]
    assert bottom < min(scratch.interval.low, minilm) and top > max(scratch.interval.high, minilm)
    assert any(label.startswith("minilm (pretrained reference*)") for label in lines)
    # The legend sits outside the axes: their boxes on the canvas do not overlap.
    figure.canvas.draw()
    legend, box = axis.get_legend().get_window_extent(), axis.get_window_extent()
    assert not legend.overlaps(box)


def test_word_vector_runs_are_budgets_of_their_own(tiny_pretraining, study, tmp_path):
    """A word-vector run (scripts/train_word_vectors.py) is one budget with its own schedule: a curve of them is
    several runs, each point at the FLOPs its run recorded, with its held-out skip-gram loss as the gate."""
    corpus = str(tiny_pretraining.parent / "corpus.txt")
    runs, infos = [], []
    for epochs in ("0.5", "2"):
        run = tmp_path / f"vectors-{epochs}"
        base = ["--train_files", corpus, "--validation_file", corpus, "--batch_size", "256"]
        infos.append(train_word_vectors([*ONE_LAYER_SCRATCH, *base, "--epochs", epochs, "--output_dir", str(run)]))
        runs.append(run)
        finetune = ["--model_name_or_path", str(run), "--data_dir", str(study / "mnli"), "--max_seq_length", "32"]
        output = str(tmp_path / "ft" / epochs / "seed42")
        run_mnli([*finetune, "--max_steps", "1", "--report_to", "none", "--output_dir", output])

    points, _ = read_curve("word-vectors", list(reversed(runs)), [tmp_path / "ft"], "eval_matched_accuracy")
    assert [p.flops for p in points] == [infos[0]["flops"], infos[1]["flops"]]  # sorted by FLOPs, as recorded
    assert [p.step for p in points] == [info["steps"] for info in infos]
    losses = [info["history"][-1]["heldout_loss"] for info in infos]
    assert [p.gate for p in points] == [("heldout_loss", pytest.approx(loss)) for loss in losses]
    assert [p.runs for p in points] == [[tmp_path / "ft" / "0.5" / "seed42"], [tmp_path / "ft" / "2" / "seed42"]]
    with pytest.raises(CurveError, match=r"is not .*vectors-2 or one of its checkpoint"):  # a run the curve lacks
        read_curve("word-vectors", [runs[1]], [tmp_path / "ft"], "eval_matched_accuracy")
