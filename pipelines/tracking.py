"""Weights & Biases: run naming, offline mode without credentials, run metadata, and reading offline runs back.

The Trainer's own `WandbCallback` logs losses, learning rate and eval metrics. This module:
- decides online/offline before the callback starts (no login prompt, no crash without a key),
- puts project, group, job type and tags in the environment variables that `wandb.init` reads,
- adds what a comparison needs to the run's config (resolved recipe, parameter counts, git commit, versions,
  hardware) and final metrics and tables to its summary,
- reads an offline run back from disk with W&B's own reader (`wandb leet inspect`), for tests and reports.
"""

from __future__ import annotations

import glob
import json
import logging
import netrc
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def wandb_enabled(training_args) -> bool:
    return "wandb" in (training_args.report_to or [])


def has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        auth = netrc.netrc().authenticators(os.environ.get("WANDB_BASE_URL", "api.wandb.ai").split("//")[-1])
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        auth = None
    return bool(auth and auth[2])


def setup_wandb(tracking_args, training_args) -> str | None:
    """Set the environment that `wandb.init` (called by the Trainer's callback) reads. Returns the mode, or None."""
    if not wandb_enabled(training_args):
        return None
    mode = tracking_args.wandb_mode or os.environ.get("WANDB_MODE")
    if mode is None:
        mode = "online" if has_wandb_credentials() else "offline"
    os.environ["WANDB_MODE"] = mode
    os.environ["WANDB_PROJECT"] = tracking_args.wandb_project
    if tracking_args.wandb_group:
        os.environ["WANDB_RUN_GROUP"] = tracking_args.wandb_group
    if tracking_args.wandb_job_type:
        os.environ["WANDB_JOB_TYPE"] = tracking_args.wandb_job_type
    if tracking_args.wandb_tags:
        os.environ["WANDB_TAGS"] = ",".join(tracking_args.wandb_tags)
    # W&B files go inside the run's output folder, so a run folder holds everything about the run.
    # (Set for each run unless the user chose WANDB_DIR: a second run in the same process gets its own folder.)
    if "WANDB_DIR" not in os.environ or os.environ.get("_PIPELINES_SET_WANDB_DIR") == "1":
        os.environ["WANDB_DIR"] = str(Path(training_args.output_dir).absolute())
        os.environ["_PIPELINES_SET_WANDB_DIR"] = "1"
    Path(os.environ["WANDB_DIR"]).mkdir(parents=True, exist_ok=True)
    # The Trainer would otherwise upload checkpoints as artifacts; the Hub is where checkpoints go.
    os.environ.setdefault("WANDB_LOG_MODEL", "false")
    os.environ.setdefault("WANDB_SILENT", "true")
    if mode == "offline" and training_args.process_index == 0:
        logger.warning(
            "W&B: no credentials found (WANDB_API_KEY or `wandb login`), logging offline to %s/wandb. "
            "Sync later with: wandb sync %s/wandb/offline-run-*",
            os.environ["WANDB_DIR"],
            os.environ["WANDB_DIR"],
        )
    return mode


def git_commit() -> str | None:
    try:
        repo = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain"], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def environment_info() -> dict[str, Any]:
    import accelerate
    import datasets
    import torch
    import transformers

    info = {
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
        "accelerate": accelerate.__version__,
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "gpu_count": torch.cuda.device_count(),
    }
    try:
        import wandb

        info["wandb"] = wandb.__version__
    except ImportError:
        pass
    return info


def update_wandb_config(values: dict[str, Any]) -> bool:
    """Add values to the active W&B run's config (main process only). False when there is no run (yet)."""
    try:
        import wandb
    except ImportError:
        return False
    if wandb.run is None:
        return False
    wandb.config.update(values, allow_val_change=True)
    return True


def log_wandb_summary(metrics: dict[str, Any], tables: dict[str, tuple[list[str], list[list]]] | None = None) -> None:
    """Final metrics into the run summary, and tables (name -> (columns, rows)) as W&B tables."""
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is None:
        return
    for key, value in metrics.items():
        wandb.run.summary[key] = value
    for name, (columns, rows) in (tables or {}).items():
        wandb.log({name: wandb.Table(columns=columns, data=rows)})


def read_offline_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """History rows, summary, config, and run attributes of an offline run folder (`wandb/offline-run-*`).

    Read with W&B's own reader of its run log, `wandb leet inspect --json` (one JSON object per record), for
    tests and reports. The folder holds no other copy of these: offline, W&B writes only the `.wandb` log.
    """
    run_dir = Path(run_dir)
    if not any(run_dir.glob("run-*.wandb")):
        raise FileNotFoundError(f"No run-*.wandb file in {run_dir}")
    command = [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(run_dir)]
    result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise ValueError(f"{run_dir}: `wandb leet inspect` cannot read the run log: {reason}")
    run: dict[str, Any] = {"history": [], "summary": {}, "config": {}, "run": {}}
    for line in result.stdout.splitlines():
        record = json.loads(line)
        kind = record.get("type")
        body = record.get(kind) or {}
        if kind == "history":
            run["history"].append(body.get("item", {}))
        elif kind == "summary":
            run["summary"].update(body.get("update", {}))
        elif kind == "config":
            run["config"].update(body.get("update", {}))
        elif kind == "run":
            run["run"] = {
                "id": body.get("run_id", ""),
                "project": body.get("project", ""),
                "group": body.get("run_group", ""),
                "job_type": body.get("job_type", ""),
                "name": body.get("display_name", ""),
                "tags": list(body.get("tags", [])),
            }
            run["config"].update(body.get("config", {}).get("update", {}))
    return run


def find_offline_runs(output_dir: str | os.PathLike) -> list[Path]:
    return [Path(p) for p in sorted(glob.glob(str(Path(output_dir) / "wandb" / "offline-run-*")))]


def finish_wandb() -> None:
    """Close the run (flushes the offline file) and say where it is and how to sync it."""
    try:
        import wandb
    except ImportError:
        return
    run = wandb.run
    if run is None:
        return
    offline = (
        run.settings.mode == "offline" if hasattr(run.settings, "mode") else os.environ.get("WANDB_MODE") == "offline"
    )
    run_dir = Path(run.dir).parent
    wandb.finish()
    if offline:
        logger.warning("W&B run saved offline in %s. Upload it with: wandb sync %s", run_dir, run_dir)
