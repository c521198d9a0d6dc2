"""Reading runs for a comparison report: a run's output folder, an offline W&B run folder, or an online W&B run
("wandb:entity/project/run_id", needs credentials), each into a `Run` (results, Trainer log rows, predictions).
W&B runs give metrics and curves but no per-example predictions.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from pipelines import tracking
from pipelines.errors import UserInputError

# Trainer log keys: eval losses (eval_loss, eval_matched_loss, ...) and the quality metrics plotted over steps
# and compared at the end. Macro-F1 stays in the tables but gets no plot of its own.
EVAL_LOSS_KEY = re.compile(r"^eval(_\w+?)?_loss$")
QUALITY_KEY = re.compile(r"^eval(_\w+?)?_(accuracy|exact_match|f1)$")
TABLE_KEY = re.compile(
    r"^(eval(_\w+?)?_(accuracy|macro_f1|exact_match|f1|loss)|train_loss|train_runtime|train_samples_per_second)$"
)


class ReportError(UserInputError, ValueError):
    """Runs that cannot be read or compared; the message says which and why."""


@dataclass
class Run:
    name: str  # shown in tables: the output folder's name or the W&B run name
    source: str  # where it was read from
    info: dict  # run_info.json: task, model, pretrained, job_type, group, seed, parameters, recipe, environment
    results: dict  # final metrics: all_results.json or the W&B summary
    history: list[dict]  # Trainer log rows: {loss, step, ...} and {eval_matched_loss, step, ...}
    predictions: dict[str, list[dict]] = field(default_factory=dict)  # split -> rows of predictions_<split>.jsonl
    arm: str | None = None

    @property
    def seed(self):
        return self.info.get("seed", self.info.get("recipe", {}).get("seed"))


def read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ReportError(f"{path}: cannot be read as JSON: {error}") from error


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as error:
                    raise ReportError(f"{path}, line {number}: not JSON: {error}") from error
    return rows


def read_run_folder(folder: Path) -> Run:
    """A finished run's output folder. all_results.json is written last by the pipeline: no file, no finished run."""
    if not (folder / "all_results.json").is_file():
        raise ReportError(
            f"{folder}: no all_results.json, so not a finished run (still running, killed, or not a run folder)"
        )
    info = read_json(folder / "run_info.json") if (folder / "run_info.json").is_file() else {}
    # Written with all_results.json at the end of every run (run_outputs.finish_run).
    history = read_json(folder / "log_history.json") if (folder / "log_history.json").is_file() else []
    predictions = {
        path.name[len("predictions_") : -len(".jsonl")]: read_jsonl(path)
        for path in sorted(folder.glob("predictions_*.jsonl"))
    }
    name = info.get("recipe", {}).get("run_name") or folder.name
    return Run(
        name=name,
        source=str(folder),
        info=info,
        results=read_json(folder / "all_results.json"),
        history=history,
        predictions=predictions,
    )


def history_from_wandb(rows) -> list[dict]:
    """W&B history rows (train/loss, train/global_step, eval/matched_loss) -> Trainer log rows (loss, step,
    eval_matched_loss)."""
    converted = []
    for row in rows:
        out = {}
        for key, value in row.items():
            if key.startswith("_") or not isinstance(value, (int, float)):
                continue
            if key == "train/global_step":
                out["step"] = value
            elif key.startswith("train/") and "/" not in key[6:]:
                out[key[6:]] = value
            elif key.startswith("eval/") and "/" not in key[5:]:
                out["eval_" + key[5:]] = value
        if len(out) > 1 and "step" in out:
            converted.append(out)
    return converted


def final_metrics_from_summary(summary: dict) -> dict:
    """The flat final metrics that finish_run put in the summary (eval_matched_accuracy, ...), not the curves' last
    values."""
    return {k: v for k, v in summary.items() if "/" not in k and not k.startswith("_")}


def read_offline_wandb_run(folder: Path) -> Run:
    """An offline W&B run folder, read with W&B's own reader (tracking.read_offline_run)."""
    try:
        run = tracking.read_offline_run(folder)
    except ValueError as error:
        raise ReportError(str(error)) from error
    info = dict(run["config"].get("run_info") or {})
    info.setdefault("job_type", run["run"].get("job_type") or None)
    info.setdefault("group", run["run"].get("group") or None)
    return Run(
        name=run["run"].get("name") or folder.name,
        source=str(folder),
        info=info,
        results=final_metrics_from_summary(run["summary"]),
        history=history_from_wandb(run["history"]),
    )


def read_online_wandb_run(path: str) -> Run:
    """An online run, "entity/project/run_id". Needs W&B credentials (WANDB_API_KEY or `wandb login`)."""
    import wandb

    try:
        run = wandb.Api().run(path)
    except Exception as error:  # no credentials, no network, no such run: all end here
        raise ReportError(f"W&B run {path}: cannot be read: {type(error).__name__}: {error}") from error
    info = dict(run.config.get("run_info") or {})
    info.setdefault("job_type", run.job_type)
    info.setdefault("group", run.group)
    return Run(
        name=run.name or path,
        source=f"wandb:{path}",
        info=info,
        results=final_metrics_from_summary(dict(run.summary_metrics)),
        history=history_from_wandb(run.scan_history()),
    )


def read_run(location: str) -> Run:
    """A run folder, an offline W&B run folder (contains run-*.wandb), or "wandb:entity/project/run_id"."""
    if location.startswith("wandb:"):
        return read_online_wandb_run(location[len("wandb:") :])
    path = Path(location)
    if not path.exists():
        raise ReportError(f"{path}: no such run folder")
    if any(path.glob("run-*.wandb")):
        return read_offline_wandb_run(path)
    return read_run_folder(path)


def parse_source(text: str) -> tuple[str | None, str]:
    """ "ARM=PATH" -> (ARM, PATH); a bare path (or one that exists as written) -> (None, PATH)."""
    if "=" in text and not Path(text).exists():
        arm, location = text.split("=", 1)
        if arm and "/" not in arm:
            return arm, location
    return None, text
