"""Which checkpoint a run resumes from: the newest complete checkpoint-<step> folder in its output_dir.

The run sequence resumes from it (`resume_from_checkpoint: auto`), and a failed save or write names it as the one
still intact.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

logger = logging.getLogger("pipelines")

CHECKPOINT_FOLDER = re.compile(r"^checkpoint-(\d+)$")


def complete_checkpoint(folder: Path) -> bool:
    """The Trainer writes trainer_state.json last: a folder is complete when that file parses and names its step."""
    try:
        state = json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return state.get("global_step") == int(folder.name.split("-")[-1])


def resolve_resume_checkpoint(training_args, value: str | None = None) -> str | None:
    """`resume_from_checkpoint: auto` -> the newest complete checkpoint in output_dir, or None to start fresh.

    A checkpoint is complete when the Trainer has written its trainer_state.json, the last file it saves, in full
    (it parses, and names the folder's step); a folder killed halfway through saving fails that and is never picked.
    """
    value = training_args.resume_from_checkpoint if value is None else value
    if value in (None, "", "false", "False", "no"):
        return None
    if value not in ("auto", "true", "True"):
        return value
    latest = newest_checkpoint(training_args.output_dir)
    if latest is not None:
        logger.info("Resuming from %s", latest)
    return latest


def newest_checkpoint(output_dir: str | Path) -> str | None:
    """The newest complete checkpoint-<step> folder in output_dir (see resolve_resume_checkpoint), or None."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    complete = [
        p for p in output_dir.iterdir() if p.is_dir() and CHECKPOINT_FOLDER.match(p.name) and complete_checkpoint(p)
    ]
    if not complete:
        return None
    return str(max(complete, key=lambda p: int(CHECKPOINT_FOLDER.match(p.name).group(1))))
