"""Our own BERT-shaped Transformer encoder as Hugging Face model classes.

Import `pipelines.models` (not this subpackage directly) to also register the classes with the
`Auto*` factories. Size presets live in `presets.py`; they are not imported here so that
`python -m pipelines.models.scratch_transformer.presets` runs without a double-import warning.
"""

from .configuration_scratch_transformer import ScratchTransformerConfig
from .modeling_scratch_transformer import (
    ScratchTransformerForMaskedLM,
    ScratchTransformerForPreTraining,
    ScratchTransformerForQuestionAnswering,
    ScratchTransformerForSequenceClassification,
    ScratchTransformerModel,
    ScratchTransformerPreTrainedModel,
)

__all__ = [
    "ScratchTransformerConfig",
    "ScratchTransformerPreTrainedModel",
    "ScratchTransformerModel",
    "ScratchTransformerForSequenceClassification",
    "ScratchTransformerForQuestionAnswering",
    "ScratchTransformerForMaskedLM",
    "ScratchTransformerForPreTraining",
]
