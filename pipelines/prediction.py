"""Predictions of a finished run over a JSON-lines file (scripts/predict.py): every input line checked first (an
error names the file, the line and the field), then the task's own transformers pipeline over them, written in the
same order with every other field kept, through a partial file renamed when complete."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tqdm.auto import tqdm

from pipelines.data_files import DataError
from pipelines.run_folder import RunFolder
from pipelines.task_definitions.base import UnknownTaskError


class InputError(DataError):
    """A line of the input file that cannot be predicted; the message names the file, line and field."""


def read_run(run_dir: Path):
    """The run folder (pipelines.run_folder.RunFolder) and its Task (run_info.json's task, else config.json's)."""
    if not (run_dir / "config.json").is_file():
        raise InputError(f"{run_dir} is not a run folder: no config.json")
    run = RunFolder.read(run_dir, finished=False)
    try:
        return run, run.task
    except UnknownTaskError as error:
        architecture = (run.config.get("architectures") or ["model of unknown class"])[0]
        raise InputError(f"{run_dir}: cannot tell the task ({error}; the model is a {architecture})") from error


def read_inputs(path: Path, fields: tuple[str, ...]) -> list[dict]:
    """Every line parsed and checked (each field present and non-empty text), before any prediction."""
    if not path.is_file():
        raise InputError(f"Input file not found: {path}")
    rows = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as error:
                raise InputError(f"{path}, line {number}: malformed JSON ({error})") from error
            if not isinstance(row, dict):
                raise InputError(
                    f"{path}, line {number}: expected a JSON object with {', '.join(fields)}, got {type(row).__name__}"
                )
            for name in fields:
                value = row.get(name)
                if name not in row:
                    raise InputError(f"{path}, line {number}: field '{name}' is missing")
                if not isinstance(value, str) or not value.strip():
                    raise InputError(
                        f"{path}, line {number}: field '{name}' is "
                        f"{'empty' if isinstance(value, str) else type(value).__name__ + ', not text'}"
                    )
            rows.append(row)
    if not rows:
        raise InputError(f"{path}: no input lines")
    return rows


def predict(
    run_dir: Path,
    input_path: Path,
    output_path: Path,
    batch_size: int = 32,
    device: str | None = None,
    trust_remote_code: bool = False,
) -> int:
    """Write one output line per input line; returns the number of lines written."""
    run, task = read_run(run_dir)
    rows = read_inputs(input_path, task.input_fields)
    predictor, options = task.behaviour.predictor(run, task, device, trust_remote_code)  # the task's own pipeline
    # A generator makes the pipeline stream its results, so the progress bar moves batch by batch.
    examples = ({name: row[name] for name in task.input_fields} for row in rows)
    predictions = predictor(examples, batch_size=batch_size, **options)

    output_path.parent.mkdir(parents=True, exist_ok=True)
    partial = output_path.with_name(output_path.name + ".partial")  # renamed when complete: no half-written output
    with partial.open("w", encoding="utf-8") as out:
        progress = tqdm(
            zip(rows, predictions),
            total=len(rows),
            unit="example",
            desc=f"predicting ({run.info.get('task') or task.name})",
        )
        for row, prediction in progress:
            out.write(json.dumps(task.behaviour.output_row(row, prediction), ensure_ascii=False) + "\n")
    os.replace(partial, output_path)
    return len(rows)
