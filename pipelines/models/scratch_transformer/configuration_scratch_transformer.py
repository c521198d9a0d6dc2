"""Configuration of our own Transformer encoder (trained from scratch, BERT-shaped).

This file is copied next to the weights by `save_pretrained` (see `pipelines/models/__init__.py`), so a
checkpoint can be loaded with `trust_remote_code=True` where our package is not installed. It must
therefore import only `transformers`, `huggingface_hub` and the standard library, never `pipelines`.

transformers v5 configs are dataclasses: every field below is a typed class attribute, `@strict` checks
the types on assignment, and unknown keyword arguments (`num_labels`, `attn_implementation`, ...) are
handled by `PreTrainedConfig.__post_init__`.
"""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.activations import ACT2FN

NORM_POSITIONS = ("post", "pre")
ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager")


@strict
class ScratchTransformerConfig(PreTrainedConfig):
    r"""
    A BERT-shaped Transformer encoder. The defaults are the BERT-base shape; the named sizes we actually
    train live in `presets.py`.

    Args:
        vocab_size: number of token ids; set it to `len(tokenizer)`.
        hidden_size: width of the residual stream (d_model).
        num_hidden_layers: number of encoder blocks.
        num_attention_heads: heads per block; must divide `hidden_size`.
        intermediate_size: width of the feed-forward layer (d_ff).
        hidden_act: activation of the feed-forward layer and of the MLM head transform.
        hidden_dropout_prob: dropout on embeddings and on each residual branch.
        attention_probs_dropout_prob: dropout on the attention probabilities.
        max_position_embeddings: longest sequence the learned position table covers.
        type_vocab_size: number of segment ids (2: premise / hypothesis, question / context).
        layer_norm_eps: epsilon of every LayerNorm.
        initializer_range: std of the normal init of Linear and Embedding weights (BERT: 0.02).
        pad_token_id: padding id; its embedding row starts at zero and gets no gradient.
        norm_position: "post" = LayerNorm after each residual add (original BERT);
            "pre" = LayerNorm before each sub-layer plus a final LayerNorm (pre-LN, more stable from scratch).
        classifier_dropout: dropout before the classification layer; None = `hidden_dropout_prob`.
        tie_word_embeddings: MLM decoder shares its weight with the input word embeddings.
        qk_layer_norm: a LayerNorm on each head's queries and keys before the scores (Dehghani et al. 2023,
            ViT-22B): the scores cannot grow until one key takes every query's attention (entropy collapse).

    The attention kernel is chosen with the standard `attn_implementation` argument ("sdpa", the default
    once a model is built, or "eager"); it is stored as `config._attn_implementation`.
    """

    model_type = "scratch_transformer"

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.1
    attention_probs_dropout_prob: float | int = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_token_id: int | None = 0
    norm_position: str = "post"
    classifier_dropout: float | int | None = None
    tie_word_embeddings: bool = True
    qk_layer_norm: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        # Raise a plain ValueError at construction time. `@strict` also runs every `validate_*` method
        # again in `save_pretrained`, which catches values changed after construction.
        self.validate_scratch_transformer()

    def validate_scratch_transformer(self):
        positive_sizes = {
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size,
            "max_position_embeddings": self.max_position_embeddings,
            "type_vocab_size": self.type_vocab_size,
        }
        for name, value in positive_sizes.items():
            if value <= 0:
                raise ValueError(f"`{name}` must be a positive integer, got {value}.")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"`hidden_size` ({self.hidden_size}) must be divisible by `num_attention_heads` "
                f"({self.num_attention_heads}) so that every head has the same width."
            )
        if self.norm_position not in NORM_POSITIONS:
            raise ValueError(f"`norm_position` must be one of {NORM_POSITIONS}, got {self.norm_position!r}.")
        if self.hidden_act not in ACT2FN:
            raise ValueError(f"`hidden_act` {self.hidden_act!r} is not a known activation (see transformers ACT2FN).")
        probabilities = {
            "hidden_dropout_prob": self.hidden_dropout_prob,
            "attention_probs_dropout_prob": self.attention_probs_dropout_prob,
            "classifier_dropout": self.classifier_dropout,
        }
        for name, value in probabilities.items():
            if value is not None and not 0 <= value < 1:
                raise ValueError(f"`{name}` must be in [0, 1), got {value}.")
        if self.layer_norm_eps <= 0 or self.initializer_range <= 0:
            raise ValueError("`layer_norm_eps` and `initializer_range` must be positive.")
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(
                f"`pad_token_id` ({self.pad_token_id}) must be a token id below `vocab_size` ({self.vocab_size})."
            )
        if self._attn_implementation not in (None, *ATTENTION_IMPLEMENTATIONS):
            raise ValueError(
                f"`attn_implementation` must be one of {ATTENTION_IMPLEMENTATIONS}, got {self._attn_implementation!r}."
            )


__all__ = ["ScratchTransformerConfig"]
