"""Model families of the pipeline, registered with the transformers `Auto*` factories.

Importing `pipelines.models` is all it takes: afterwards `AutoConfig.for_model("scratch_transformer", ...)`,
`AutoModelForSequenceClassification.from_config(config)` and `.from_pretrained(checkpoint)` all build our
own encoder. This file is the only place where registration happens.

Two kinds of registration, both needed:
- `AutoConfig.register` / `AutoModel*.register`: the factories know our classes in this process.
- `register_for_auto_class`: `save_pretrained` copies the configuration and modeling files into the
  checkpoint and writes an `auto_map`, so the checkpoint also loads with `trust_remote_code=True` in a
  process where `pipelines` is not installed.
Registering again (module reload, tests) is harmless: `exist_ok=True`.

Public API, e.g. a 3-way MNLI classifier of the small 3-layer shape for a given tokenizer:

    from pipelines.models import ScratchTransformerForSequenceClassification, config_from_preset
    config = config_from_preset("small-3l-4h", vocab_size=len(tokenizer), num_labels=3)
    model = ScratchTransformerForSequenceClassification(config)
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForPreTraining,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
)

from .scratch_transformer import (
    ScratchTransformerConfig,
    ScratchTransformerForMaskedLM,
    ScratchTransformerForPreTraining,
    ScratchTransformerForQuestionAnswering,
    ScratchTransformerForSequenceClassification,
    ScratchTransformerModel,
    ScratchTransformerPreTrainedModel,
)

AUTO_CLASS_REGISTRATIONS = (
    (AutoModel, ScratchTransformerModel),
    (AutoModelForSequenceClassification, ScratchTransformerForSequenceClassification),
    (AutoModelForQuestionAnswering, ScratchTransformerForQuestionAnswering),
    (AutoModelForMaskedLM, ScratchTransformerForMaskedLM),
    (AutoModelForPreTraining, ScratchTransformerForPreTraining),
)


def register_scratch_transformer() -> None:
    """Register the scratch encoder with the Auto factories and for remote-code saving (idempotent)."""
    AutoConfig.register(ScratchTransformerConfig.model_type, ScratchTransformerConfig, exist_ok=True)
    ScratchTransformerConfig.register_for_auto_class()  # "AutoConfig"
    for auto_class, model_class in AUTO_CLASS_REGISTRATIONS:
        auto_class.register(ScratchTransformerConfig, model_class, exist_ok=True)
        model_class.register_for_auto_class(auto_class.__name__)


register_scratch_transformer()


# The preset helpers are loaded on first use rather than here: importing presets.py while this package
# initialises would make `python -m pipelines.models.scratch_transformer.presets` warn that the module
# was imported twice.
_PRESET_EXPORTS = ("PRESETS", "ParameterCounts", "config_from_preset", "count_parameters")


def __getattr__(name: str):
    if name in _PRESET_EXPORTS:
        from .scratch_transformer import presets

        return getattr(presets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ScratchTransformerConfig",
    "ScratchTransformerPreTrainedModel",
    "ScratchTransformerModel",
    "ScratchTransformerForSequenceClassification",
    "ScratchTransformerForQuestionAnswering",
    "ScratchTransformerForMaskedLM",
    "ScratchTransformerForPreTraining",
    "register_scratch_transformer",
    *_PRESET_EXPORTS,
]
