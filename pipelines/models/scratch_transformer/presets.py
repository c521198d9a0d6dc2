"""Named sizes of our scratch encoder, as plain data, and parameter counting.

    config = config_from_preset("small-6l-4h", vocab_size=len(tokenizer), num_labels=3)

`python -m pipelines.models.scratch_transformer.presets` prints the parameter count of every preset.
Presets set the shape (and the training-relevant norms/dropout of their source); `vocab_size` should
nearly always be overridden with the tokenizer actually used.
"""

from dataclasses import dataclass

import torch
from torch import nn

from .configuration_scratch_transformer import ScratchTransformerConfig

# BERT-base shape (seed 1): hidden 768, FFN 3072, 12 heads of 64, 512 positions, WordPiece vocab 30,522.
_BERT_BASE_SHAPE = dict(
    vocab_size=30522,
    hidden_size=768,
    num_attention_heads=12,
    intermediate_size=3072,
    max_position_embeddings=512,
    layer_norm_eps=1e-12,
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
)

# Small BERTs (seed 2): d_model 256, d_ff 1024, 384 positions, 32,007-token vocabulary,
# LayerNorm eps 1e-3, dropout 0.1.
_SMALL_BERT_SHAPE = dict(
    vocab_size=32007,
    hidden_size=256,
    intermediate_size=1024,
    max_position_embeddings=384,
    layer_norm_eps=1e-3,
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
)

PRESETS: dict[str, dict] = {
    # 6 layers so that it has the depth of DistilBERT (the 6-layer pretrained baseline seed 1 compares
    # against): same width, same depth, only pretraining differs.
    "base-6l": dict(_BERT_BASE_SHAPE, num_hidden_layers=6),
    # BERT-base proper, for comparisons with 12-layer pretrained encoders.
    "base-12l": dict(_BERT_BASE_SHAPE, num_hidden_layers=12),
    "small-3l-4h": dict(_SMALL_BERT_SHAPE, num_hidden_layers=3, num_attention_heads=4),  # 4 heads of 64
    "small-6l-4h": dict(_SMALL_BERT_SHAPE, num_hidden_layers=6, num_attention_heads=4),  # 4 heads of 64
    "small-6l-8h": dict(_SMALL_BERT_SHAPE, num_hidden_layers=6, num_attention_heads=8),  # 8 heads of 32
    # The shape of all-MiniLM-L6-v2 (6 layers, hidden 384, 12 heads of 32, FFN 1536): the honest
    # scratch counterpart of the pretrained MiniLM model, identical except for pretraining.
    "minilm-l6-h384": dict(
        _BERT_BASE_SHAPE,
        num_hidden_layers=6,
        hidden_size=384,
        num_attention_heads=12,
        intermediate_size=1536,
    ),
    # For unit tests: builds and runs in milliseconds.
    "tiny": dict(
        vocab_size=1000,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        layer_norm_eps=1e-12,
    ),
}


def config_from_preset(name: str, **overrides) -> ScratchTransformerConfig:
    """The config of a named preset; keyword overrides win (vocab_size, num_labels, norm_position, ...)."""
    if name not in PRESETS:
        raise ValueError(f"Unknown scratch_transformer preset {name!r}. Known presets: {', '.join(PRESETS)}.")
    return ScratchTransformerConfig(**{**PRESETS[name], **overrides})


@dataclass(frozen=True)
class ParameterCounts:
    total: int
    embedding: int  # the word, position and segment embedding tables
    non_embedding: int  # everything else: blocks, LayerNorms, heads


def count_parameters(model: nn.Module) -> ParameterCounts:
    """Parameter counts of a model; tied parameters (MLM decoder = word embeddings) count once."""
    # `parameters()` yields a shared tensor once; the embedding tables are found by module type.
    total = sum(parameter.numel() for parameter in model.parameters())
    embedding_tables = {
        id(module.weight): module.weight.numel() for module in model.modules() if isinstance(module, nn.Embedding)
    }
    embedding = sum(embedding_tables.values())
    return ParameterCounts(total=total, embedding=embedding, non_embedding=total - embedding)


def parameter_table(num_labels: int = 3) -> str:
    """Markdown table of parameter counts, building every preset on the meta device (no memory, instant)."""
    from .modeling_scratch_transformer import ScratchTransformerForSequenceClassification, ScratchTransformerModel

    rows = [
        "| preset | layers | hidden | heads | FFN | vocab | positions | encoder total | embedding | non-embedding "
        f"| + {num_labels}-way classifier |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in PRESETS:
        config = config_from_preset(name, num_labels=num_labels)
        with torch.device("meta"):
            encoder_counts = count_parameters(ScratchTransformerModel(config))
            classifier_counts = count_parameters(ScratchTransformerForSequenceClassification(config))
        rows.append(
            f"| {name} | {config.num_hidden_layers} | {config.hidden_size} | {config.num_attention_heads} "
            f"| {config.intermediate_size} | {config.vocab_size:,} | {config.max_position_embeddings} "
            f"| {encoder_counts.total:,} | {encoder_counts.embedding:,} | {encoder_counts.non_embedding:,} "
            f"| {classifier_counts.total:,} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(parameter_table())
