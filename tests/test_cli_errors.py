"""Errors a person can read, and runs that never overwrite a finished run or pretend to have trained.

The scripts run as subprocesses, as a user runs them: an error in the user's input prints `error: <message>` as
the first line of stderr and exits with status 2; PIPELINES_TRACEBACK=1 adds the traceback; a bug keeps its
traceback. Progress bars are switched off (TQDM_DISABLE=1) so that stderr holds only what the scripts print.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, subprocess_env

from pipelines.arguments import ModelArguments, RecipeError, TrackingArguments, parse_recipe
from pipelines.data_files import DataError
from pipelines.run_guard import OutputDirError, RunArguments, check_numbers, check_output_dir
from pipelines.tasks import mnli
from pipelines.tasks.mnli import MnliDataArguments, load_raw_datasets

# Made-up pairs: never dev data in training.
ROWS = [
    {
        "premise": f"A man plays song number {i} on a guitar.",
        "hypothesis": "A man makes music." if i % 2 else "Nobody plays.",
        "label": i % 3,
    }
    for i in range(24)
]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def data(tmp_path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", ROWS)
    write_jsonl(folder / "validation_matched.jsonl", ROWS[:4])
    write_jsonl(folder / "validation_mismatched.jsonl", ROWS[4:8])
    return folder


def recipe_file(tmp_path, tiny_bert_dir, data, **extra) -> Path:
    recipe = {
        "model_name_or_path": str(tiny_bert_dir),
        "data_dir": str(data),
        "max_seq_length": 32,
        "per_device_train_batch_size": 8,
        "learning_rate": 1e-3,
        "max_steps": 2,
        "report_to": "none",
        **extra,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def run_script(script: str, *args, cwd, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / script), *map(str, args)],
        cwd=cwd,
        env=subprocess_env(TQDM_DISABLE="1", **env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def first_line(result) -> str:
    return (result.stderr.splitlines() or [""])[0]


# --- A finished run is never overwritten --------------------------------------------------------------------


def test_second_run_into_a_finished_run_is_refused_and_overwrite_moves_it_aside(tmp_path, tiny_bert_dir, data):
    output_dir = tmp_path / "out"
    recipe = recipe_file(tmp_path, tiny_bert_dir, data, output_dir=str(output_dir))
    mnli.main([str(recipe)])  # the first run, in-process
    first_results = (output_dir / "all_results.json").read_text()

    again = run_script("run_mnli.py", recipe, cwd=tmp_path)
    assert again.returncode == 2, again.stderr[-2000:]
    assert first_line(again) == (
        f"error: {output_dir} already holds a finished run (all_results.json). Choose a new output_dir, or set "
        "overwrite_output_dir: true (--overwrite_output_dir) to move the old run aside and start again."
    )
    assert (output_dir / "all_results.json").read_text() == first_results

    mnli.main([str(recipe), "--overwrite_output_dir"])  # in-process: what is checked is the folders
    moved = list(tmp_path.glob("out.replaced-*"))
    assert len(moved) == 1 and (moved[0] / "all_results.json").read_text() == first_results
    assert (moved[0] / "model.safetensors").is_file() and (output_dir / "all_results.json").is_file()


def test_resuming_and_unfinished_study_jobs_pass_the_output_guard(tmp_path):
    class Args:  # the two TrainingArguments fields the guard reads
        output_dir = str(tmp_path / "job")
        process_index = 0

    job = tmp_path / "job"
    job.mkdir()
    (job / "job_recipe.yaml").write_text("{}\n")  # what run_study.py writes before a job's first attempt
    check_output_dir(Args, RunArguments(), resume_from=None)  # unfinished: runs (and resumes when it can)
    (job / "all_results.json").write_text("{}\n")
    with pytest.raises(OutputDirError, match="already holds a finished run"):
        check_output_dir(Args, RunArguments(), resume_from=None)
    check_output_dir(Args, RunArguments(), resume_from=str(job / "checkpoint-4"))  # resuming it
    check_output_dir(Args, RunArguments(overwrite_output_dir=True), resume_from=None)


@pytest.mark.parametrize("where", ["a file", "a read-only filesystem"])
def test_unwritable_output_dir_is_refused_before_anything_runs(tmp_path, where):
    class Args:
        output_dir = str(tmp_path / "file.txt" / "out")
        process_index = 0

    (tmp_path / "file.txt").write_text("x")
    if where == "a read-only filesystem":  # root writes through chmod, not through a read-only mount
        readonly = tmp_path / "ro"
        readonly.mkdir()
        if subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(readonly)], capture_output=True
        ).returncode:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        Args.output_dir = str(readonly / "out")
    try:
        with pytest.raises(OutputDirError, match="cannot be (created|written)"):
            check_output_dir(Args, RunArguments(), resume_from=None)
    finally:
        if where == "a read-only filesystem":
            subprocess.run(["umount", str(readonly)], check=True)


# --- Numbers checked before the output folder exists --------------------------------------------------------


@pytest.mark.parametrize(
    "in_recipe, on_command_line, message",
    [
        (
            {},
            ["--num_train_epochs", "0", "--max_steps", "-1"],
            "error: num_train_epochs is 0 and max_steps is not set: the run would train 0 steps. "
            "Set num_train_epochs or "
            "max_steps above 0.",
        ),
        ({"learning_rate": -1}, [], "error: learning_rate is -1; it must be a positive number"),
    ],
    ids=["zero-epochs", "negative-learning-rate-in-recipe"],
)
def test_numbers_that_cannot_train_stop_before_the_output_folder(
    tmp_path, tiny_bert_dir, data, in_recipe, on_command_line, message
):
    output_dir = tmp_path / "out"
    recipe = recipe_file(tmp_path, tiny_bert_dir, data, output_dir=str(output_dir), **in_recipe)
    result = run_script("run_mnli.py", recipe, *on_command_line, cwd=tmp_path)
    assert result.returncode == 2 and first_line(result) == message, result.stderr[-2000:]
    assert not output_dir.exists()


@pytest.mark.parametrize(
    "name, value",
    [
        ("learning_rate", 0.0),
        ("learning_rate", float("nan")),
        ("per_device_train_batch_size", 0),
        ("per_device_eval_batch_size", -1),
        ("gradient_accumulation_steps", 0),
        ("max_steps", 0),
        ("weight_decay", -0.1),
        ("adam_beta2", 1.0),
        ("max_seq_length", 0),
        ("max_train_samples", 0),
        ("save_steps", 0),
    ],
)
def test_every_checked_number(tmp_path, name, value):
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    data_args = MnliDataArguments()
    setattr(data_args if hasattr(data_args, name) else args, name, value)
    with pytest.raises(RecipeError, match=f"^{name} is "):
        check_numbers(data_args, args)
    check_numbers(MnliDataArguments(), TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[]))


# --- Data files ---------------------------------------------------------------------------------------------


def load_train(folder: Path, train: Path):
    return load_raw_datasets(
        MnliDataArguments(
            train_file=str(train),
            validation_matched_file=str(folder / "validation_matched.jsonl"),
            validation_mismatched_file=str(folder / "validation_mismatched.jsonl"),
        )
    )["train"]


def test_byte_order_mark_is_accepted(data):
    path = data / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (data / "train.jsonl").read_bytes())
    train = load_train(data, path)
    assert len(train) == len(ROWS) and train["premise"][0] == ROWS[0]["premise"]


def test_empty_file_says_it_is_empty(data):
    path = data / "empty.jsonl"
    path.write_text("")
    with pytest.raises(DataError) as error:
        load_train(data, path)
    assert str(error.value) == f"{path}: the file is empty"


def test_text_field_that_is_a_number(data):
    path = write_jsonl(data / "numbers.jsonl", [ROWS[0], dict(ROWS[1], premise=12345)])
    with pytest.raises(DataError) as error:
        load_train(data, path)
    assert str(error.value) == f"{path}, line 2: field 'premise' is 12345 (int); expected text"


def test_integral_float_labels_are_read_as_ints(data):
    path = write_jsonl(data / "floats.jsonl", [dict(r, label=float(r["label"])) for r in ROWS])
    assert load_train(data, path)["label"] == [r["label"] for r in ROWS]
    frame = pd.DataFrame(ROWS)
    frame["label"] = frame["label"].astype(float)  # what pandas writes when a label column held a missing value
    frame.to_csv(data / "floats.csv", index=False)
    assert "0.0" in (data / "floats.csv").read_text()
    assert load_train(data, data / "floats.csv")["label"] == [r["label"] for r in ROWS]

    path = write_jsonl(data / "half.jsonl", [ROWS[0], dict(ROWS[1], label=1.5)])
    with pytest.raises(DataError) as error:
        load_train(data, path)
    assert (
        str(error.value) == f"{path}, line 2: field 'label' is 1.5; expected 0, 1, 2 (GLUE order) "
        "or one of entailment, neutral, contradiction"
    )


# --- The recipe anywhere on the command line ----------------------------------------------------------------


def test_recipe_after_the_flags(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"model_name_or_path": "minilm", "max_seq_length": 64, "wandb_project": "p"}))
    types = (ModelArguments, MnliDataArguments, TrackingArguments)
    model_args, data_args, _, resolved = parse_recipe(types, ["--max_seq_length", "32", str(recipe)])
    assert model_args.model_name_or_path == "minilm" and data_args.max_seq_length == 32
    _, data_args, _, _ = parse_recipe(types, ["--pad_to_max_length", str(recipe), "--max_seq_length", "16"])
    assert data_args.pad_to_max_length and data_args.max_seq_length == 16
    with pytest.raises(RecipeError, match="'stray'.*Give the recipe as a .yaml file"):
        parse_recipe(types, [str(recipe), "stray"])


# --- Every script: one line and status 2 for bad input ------------------------------------------------------


TINY_SQUAD = REPO / "tests" / "fixtures" / "qa" / "tiny_squad.json"


def broken_model(folder: Path, tiny_bert_dir: str) -> Path:
    """A model folder whose config.json is cut off, as an interrupted copy leaves it."""
    folder.mkdir()
    (folder / "config.json").write_text((Path(tiny_bert_dir) / "config.json").read_text()[:40])
    return folder


# case -> (script, arguments(tmp_path, tiny model, data folder), the first line of stderr starts with)
CASES = {
    "run_mnli.py data": (
        "run_mnli.py",
        lambda t, m, d: [
            "--model_name_or_path",
            m,
            "--data_dir",
            d,
            "--train_file",
            write_jsonl(t / "bad.jsonl", [ROWS[0], dict(ROWS[1], label=7)]),
            "--output_dir",
            t / "out",
        ],
        "error: {t}/bad.jsonl, line 2: field 'label' is 7; expected 0, 1, 2 (GLUE order) "
        "or one of entailment, neutral, contradiction",
    ),
    "run_mnli.py model folder": (
        "run_mnli.py",
        lambda t, m, d: [
            "--model_name_or_path",
            broken_model(t / "broken", m),
            "--tokenizer_name",
            m,
            "--data_dir",
            d,
            "--output_dir",
            t / "out",
        ],
        "error: Could not load model config from {t}/broken: OSError: ",
    ),
    "run_qa.py hub": (
        "run_qa.py",
        lambda t, m, d: [
            "--model_name_or_path",
            "no-such-user/no-such-model",
            "--validation_file",
            TINY_SQUAD,
            "--output_dir",
            t / "out",
        ],
        "error: Could not load tokenizer 'no-such-user/no-such-model': OSError: ",
    ),
    "run_pretraining.py": (
        "run_pretraining.py",
        lambda t, m, d: [
            "--scratch_preset",
            "small-3l-4h",
            "--tokenizer_name",
            m,
            "--train_files",
            t / "none.txt",
            "--output_dir",
            t / "out",
        ],
        "error: Pretraining text file(s) not found: {t}/none.txt",
    ),
    "train_tokenizer.py": (
        "train_tokenizer.py",
        lambda t, m, d: ["--files", t / "none.txt", "--language", "en", "--output_dir", t / "out"],
        "error: Tokenizer training file(s) not found: {t}/none.txt",
    ),
    "run_study.py": ("run_study.py", lambda t, m, d: [t / "none.yaml"], "error: Study file not found: {t}/none.yaml"),
    "compare.py": (
        "compare.py",
        lambda t, m, d: [d, "--output-dir", t / "out"],
        "error: {d}: no all_results.json, so not a finished run",
    ),
    "predict.py": (
        "predict.py",
        lambda t, m, d: [d, "--input", t / "in.jsonl", "--output", t / "out"],
        "error: {d} is not a run folder: no config.json",
    ),
    "push_to_hub.py": (
        "push_to_hub.py",
        lambda t, m, d: [d, "--repo-id", "someone/model", "--dry-run", t / "out"],
        "error: {d}/config.json not found: {d} is not the output folder of a finished run",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_script_prints_one_line_and_exits_2(tmp_path, tiny_bert_dir, data, case):
    script, arguments, expected = CASES[case]
    result = run_script(script, *arguments(tmp_path, str(tiny_bert_dir), data), cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert first_line(result).startswith(expected.format(t=tmp_path, m=tiny_bert_dir, d=data)), result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_traceback_on_request_and_for_bugs(tmp_path):
    shown = run_script("run_study.py", tmp_path / "none.yaml", cwd=tmp_path, PIPELINES_TRACEBACK="1")
    assert shown.returncode == 2 and shown.stderr.startswith("Traceback") and "StudyError" in shown.stderr
    assert f"error: Study file not found: {tmp_path}/none.yaml" in shown.stderr

    bug = subprocess.run(
        [sys.executable, "-c", "from pipelines import cli; cli.run(lambda: {}['missing'])"],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bug.returncode == 1 and bug.stderr.startswith("Traceback") and "KeyError: 'missing'" in bug.stderr
