"""Our own BERT-shaped Transformer encoder, written as first-class Hugging Face model classes.

Read top to bottom: embeddings -> attention -> feed-forward -> encoder block -> base model -> task heads.
Shapes in comments use B = batch size, S = sequence length, H = hidden size, N = number of heads,
D = head width (H / N), V = vocabulary size.

Like the configuration, this file is copied into every checkpoint (`save_pretrained` with
`register_for_auto_class`, done in `pipelines/models/__init__.py`), so it may import only torch,
transformers and, relatively, the configuration: never anything else from `pipelines`.
"""

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
)
from transformers.utils import ModelOutput, can_return_tuple

from .configuration_scratch_transformer import ScratchTransformerConfig


class ScratchTransformerEmbeddings(nn.Module):
    """Token + learned position + segment (token type) embeddings, then LayerNorm and dropout (as BERT)."""

    def __init__(self, config: ScratchTransformerConfig):
        super().__init__()
        # padding_idx: the pad row starts at zero and receives no gradient.
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        input_ids: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
    ) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (B, S) -> (B, S, H)
        seq_length = inputs_embeds.shape[1]
        if position_ids is None:
            position_ids = torch.arange(seq_length, device=inputs_embeds.device)  # (S,), broadcast over B
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(position_ids)
        embeddings = inputs_embeds + self.position_embeddings(position_ids) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.layer_norm(embeddings))


def sdpa_attention(query, key, value, keep_mask, dropout_p):
    """PyTorch's fused kernel. keep_mask: (B, 1, 1, S) bool, True where a key may be attended to.

    Except when training in bf16 on a CPU: there torch's fused kernel (flash attention forward and backward, or the
    math path when dropout is on) measured 1.6-8x slower than the three explicit ops of `eager_attention`, so
    training takes those (BENCHMARKS.md, 2026-12-03, Xeon with AMX). Inference keeps the fused kernel, 3-7x faster
    there. The two compute the same formula.
    """
    if query.requires_grad and query.device.type == "cpu" and query.dtype == torch.bfloat16:
        return eager_attention(query, key, value, keep_mask, dropout_p)
    return F.scaled_dot_product_attention(query, key, value, attn_mask=keep_mask, dropout_p=dropout_p)


def eager_attention(query, key, value, keep_mask, dropout_p):
    """The textbook formula, softmax(Q K^T / sqrt(D)) V: the readable reference the sdpa path must match."""
    scores = query @ key.transpose(-1, -2) * query.shape[-1] ** -0.5  # (B, N, S, S)
    if keep_mask is not None:
        # The most negative finite number rather than -inf: a fully masked row then gives uniform
        # weights instead of NaN.
        scores = scores.masked_fill(~keep_mask, torch.finfo(scores.dtype).min)
    probs = F.dropout(torch.softmax(scores, dim=-1), p=dropout_p)  # `dropout_p` is 0.0 in eval mode
    return probs @ value  # (B, N, S, D)


def masked_lm_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of (M, V) vocabulary logits against (M,) token ids, as an fp32 scalar.

    In bf16 (autocast) the log-softmax runs on the bf16 logits (its kernel accumulates in fp32) and only the M picked
    log-probabilities are summed in fp32. Upcasting the (M, V) logits first, as F.cross_entropy under autocast does,
    made the step 1.7x slower on a Xeon with AMX (BENCHMARKS.md, 2026-12-03) for the same held-out loss.
    """
    if logits.dtype == torch.float32:
        return F.cross_entropy(logits, targets, reduction=reduction)
    with torch.autocast(logits.device.type, enabled=False):
        log_probs = torch.log_softmax(logits, dim=-1)  # (M, V), in the logits' dtype
    picked = log_probs.gather(1, targets[:, None]).squeeze(1).float()  # (M,)
    return -(picked.sum() if reduction == "sum" else picked.mean())


ATTENTION_FUNCTIONS = {"sdpa": sdpa_attention, "eager": eager_attention}


class ScratchTransformerSelfAttention(nn.Module):
    """Multi-head self-attention with one fused Q/K/V projection (one matmul instead of three)."""

    def __init__(self, config: ScratchTransformerConfig):
        super().__init__()
        self.config = config  # read at call time, so `model.set_attn_implementation(...)` takes effect
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_prob = config.attention_probs_dropout_prob
        # qk_layer_norm: one LayerNorm over the head width, shared by the heads (as in ViT-22B).
        qk_norm = config.qk_layer_norm
        self.query_norm = nn.LayerNorm(self.head_dim, eps=config.layer_norm_eps) if qk_norm else None
        self.key_norm = nn.LayerNorm(self.head_dim, eps=config.layer_norm_eps) if qk_norm else None

    def project(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, S, H) -> query, key, value, each (B, N, S, D); queries and keys normalised with qk_layer_norm."""
        batch_size, seq_length, _ = hidden_states.shape
        # (B, S, 3H) -> (B, S, 3, N, D) -> (3, B, N, S, D): views, no copy
        qkv = self.qkv(hidden_states).view(batch_size, seq_length, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if self.query_norm is not None:
            query, key = self.query_norm(query), self.key_norm(key)
        return query, key, value

    def forward(self, hidden_states: torch.Tensor, keep_mask: torch.Tensor | None) -> torch.Tensor:
        batch_size, seq_length, hidden_size = hidden_states.shape
        query, key, value = self.project(hidden_states)  # each (B, N, S, D)

        implementation = self.config._attn_implementation or "sdpa"
        if implementation not in ATTENTION_FUNCTIONS:
            raise ValueError(f"attn_implementation must be one of {list(ATTENTION_FUNCTIONS)}, got {implementation!r}.")
        dropout_p = self.dropout_prob if self.training else 0.0
        context = ATTENTION_FUNCTIONS[implementation](query, key, value, keep_mask, dropout_p)  # (B, N, S, D)

        context = context.transpose(1, 2).reshape(batch_size, seq_length, hidden_size)  # (B, S, H)
        return self.out_proj(context)


class ScratchTransformerFeedForward(nn.Module):
    """Position-wise feed-forward: Linear(H -> d_ff), GELU, Linear(d_ff -> H)."""

    def __init__(self, config: ScratchTransformerConfig):
        super().__init__()
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = ACT2FN[config.hidden_act]
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.output(self.activation(self.intermediate(hidden_states)))  # (B, S, H)


class ScratchTransformerLayer(GradientCheckpointingLayer):
    """One encoder block. Post-LN (BERT): x = LN(x + f(x)). Pre-LN: x = x + f(LN(x)).

    Subclassing `GradientCheckpointingLayer` is how transformers v5 adds gradient checkpointing: the
    model's `gradient_checkpointing_enable()` flips a flag on every such layer. The hidden states must be
    passed positionally for the recomputation to see them.
    """

    def __init__(self, config: ScratchTransformerConfig):
        super().__init__()
        self.is_pre_norm = config.norm_position == "pre"
        self.attention = ScratchTransformerSelfAttention(config)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = ScratchTransformerFeedForward(config)
        self.feed_forward_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, keep_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.is_pre_norm:
            attention_out = self.attention(self.attention_norm(hidden_states), keep_mask)
            hidden_states = hidden_states + self.dropout(attention_out)
            feed_forward_out = self.feed_forward(self.feed_forward_norm(hidden_states))
            hidden_states = hidden_states + self.dropout(feed_forward_out)
        else:
            attention_out = self.attention(hidden_states, keep_mask)
            hidden_states = self.attention_norm(hidden_states + self.dropout(attention_out))
            feed_forward_out = self.feed_forward(hidden_states)
            hidden_states = self.feed_forward_norm(hidden_states + self.dropout(feed_forward_out))
        return hidden_states  # (B, S, H)


# Which auto class loads which head; `save_pretrained` writes all of them into `auto_map` (see below) and
# `pipelines/models/__init__.py` registers the classes with these auto classes.
AUTO_CLASS_BY_MODEL_NAME = {
    "ScratchTransformerModel": "AutoModel",
    "ScratchTransformerForSequenceClassification": "AutoModelForSequenceClassification",
    "ScratchTransformerForQuestionAnswering": "AutoModelForQuestionAnswering",
    "ScratchTransformerForMaskedLM": "AutoModelForMaskedLM",
    "ScratchTransformerForPreTraining": "AutoModelForPreTraining",
}


class ScratchTransformerPreTrainedModel(PreTrainedModel):
    config_class = ScratchTransformerConfig
    base_model_prefix = "transformer"  # heads keep the encoder in `self.transformer`
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["ScratchTransformerLayer"]
    # Our losses are means over the batch and ignore `num_items_in_batch`. Saying so makes the Trainer
    # divide the loss by the gradient-accumulation steps itself; otherwise (any forward with **kwargs is
    # assumed to normalise by `num_items_in_batch`) accumulated gradients would be too large.
    accepts_loss_kwargs = False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module):
        """BERT init: Linear/Embedding ~ normal(0, initializer_range), zero biases, LayerNorm = identity.

        `transformers.initialization` functions skip tensors already loaded from a checkpoint.
        """
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
            # A slice loses the "already loaded" flag, so check it on the full weight before zeroing the pad row.
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, ScratchTransformerGeneratorHead):
            init.zeros_(module.bias)  # its own vocabulary bias; the weight is the shared embedding matrix

    @classmethod
    def _can_set_attn_implementation(cls) -> bool:
        # transformers guesses this from the source code (it looks for its own attention-function registry).
        # Our attention reads `config._attn_implementation` on every call, so `set_attn_implementation` works.
        return True

    def save_pretrained(self, save_directory, *args, **kwargs):
        # With `register_for_auto_class`, transformers writes only the saved class into `auto_map`. Record
        # every head, so that e.g. an MLM-pretrained checkpoint loads as a classifier with trust_remote_code.
        if self.is_remote_code():
            module_name = type(self).__module__.rsplit(".", 1)[-1]
            all_heads = {auto: f"{module_name}.{name}" for name, auto in AUTO_CLASS_BY_MODEL_NAME.items()}
            self.config.auto_map = {**all_heads, **(getattr(self.config, "auto_map", None) or {})}
        return super().save_pretrained(save_directory, *args, **kwargs)


def padding_keep_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, S) with 1 = real token, 0 = padding -> (B, 1, 1, S) bool, True = may be attended to.

    The same boolean mask serves both attention paths and broadcasts over heads and query positions.
    Returns None when nothing is padded, which lets sdpa use its fastest unmasked kernel (the check reads
    the mask, so it is skipped while torch.compile traces).
    """
    if attention_mask is None:
        return None
    if not torch.compiler.is_compiling() and bool(attention_mask.all()):
        return None
    return attention_mask[:, None, None, :].bool()


class ScratchTransformerModel(ScratchTransformerPreTrainedModel):
    """The bare encoder: returns the hidden states of the last block (and optionally of every block)."""

    def __init__(self, config: ScratchTransformerConfig):
        super().__init__(config)
        self.embeddings = ScratchTransformerEmbeddings(config)
        self.layers = nn.ModuleList([ScratchTransformerLayer(config) for _ in range(config.num_hidden_layers)])
        # Pre-LN leaves the residual stream un-normalised, so it needs one LayerNorm at the end.
        is_pre_norm = config.norm_position == "pre"
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if is_pre_norm else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding):
        self.embeddings.word_embeddings = value

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,  # (B, S)
        attention_mask: torch.Tensor | None = None,  # (B, S), 1 = keep, 0 = padding
        token_type_ids: torch.Tensor | None = None,  # (B, S)
        position_ids: torch.Tensor | None = None,  # (B, S) or (S,)
        inputs_embeds: torch.Tensor | None = None,  # (B, S, H), instead of input_ids
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> BaseModelOutput:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` or `inputs_embeds`.")
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states

        hidden_states = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)  # (B, S, H)
        keep_mask = padding_keep_mask(attention_mask)

        # hidden_states output: the embeddings, the input of every later block, then the final output.
        all_hidden_states = () if output_hidden_states else None
        for layer in self.layers:
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            hidden_states = layer(hidden_states, keep_mask)
        if self.final_layer_norm is not None:
            hidden_states = self.final_layer_norm(hidden_states)
        if output_hidden_states:
            all_hidden_states += (hidden_states,)

        return BaseModelOutput(last_hidden_state=hidden_states, hidden_states=all_hidden_states)


def sequence_classification_loss(logits: torch.Tensor, labels: torch.Tensor, config) -> torch.Tensor:
    """Same rules as BERT: one output = regression (MSE), integer labels = cross-entropy,
    float labels with several outputs = multi-label (BCE). `config.problem_type` overrides the guess."""
    problem_type = config.problem_type
    if problem_type is None:
        if config.num_labels == 1:
            problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem_type = "single_label_classification"
        else:
            problem_type = "multi_label_classification"
    if problem_type == "regression":
        return F.mse_loss(logits.squeeze(-1), labels.squeeze(-1).to(logits.dtype))
    if problem_type == "single_label_classification":
        return F.cross_entropy(logits.view(-1, config.num_labels), labels.view(-1))
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


class ScratchTransformerForSequenceClassification(ScratchTransformerPreTrainedModel):
    """Encoder + BERT pooler (first token -> dense -> tanh) + dropout + linear classifier.

    The first token is [CLS] with BERT-style tokenizers. The pooler belongs to this head (not to the
    base model as in BERT) because our MLM pretraining has no next-sentence task to train it.
    """

    def __init__(self, config: ScratchTransformerConfig):
        super().__init__(config)
        self.transformer = ScratchTransformerModel(config)
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size)
        classifier_dropout = config.classifier_dropout
        if classifier_dropout is None:
            classifier_dropout = config.hidden_dropout_prob
        self.dropout = nn.Dropout(classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,  # (B,) class ids, or (B,) floats for regression
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        outputs = self.transformer(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        pooled = torch.tanh(self.pooler(outputs.last_hidden_state[:, 0]))  # (B, H)
        logits = self.classifier(self.dropout(pooled))  # (B, num_labels)

        loss = sequence_classification_loss(logits, labels, self.config) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)


class ScratchTransformerForQuestionAnswering(ScratchTransformerPreTrainedModel):
    """Extractive QA: one linear layer gives a start and an end logit per token (as BERT)."""

    def __init__(self, config: ScratchTransformerConfig):
        super().__init__(config)
        self.transformer = ScratchTransformerModel(config)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,  # (B,) token index of the answer start
        end_positions: torch.Tensor | None = None,  # (B,) token index of the answer end
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> QuestionAnsweringModelOutput:
        outputs = self.transformer(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.qa_outputs(outputs.last_hidden_state)  # (B, S, 2)
        start_logits, end_logits = (part.squeeze(-1).contiguous() for part in logits.split(1, dim=-1))  # (B, S)

        loss = None
        if start_positions is not None and end_positions is not None:
            # Answers outside the window (e.g. truncated away) are clamped to index S and ignored, as in BERT.
            ignored_index = start_logits.shape[1]
            start_positions = start_positions.view(-1).clamp(0, ignored_index)
            end_positions = end_positions.view(-1).clamp(0, ignored_index)
            start_loss = F.cross_entropy(start_logits, start_positions, ignore_index=ignored_index)
            end_loss = F.cross_entropy(end_logits, end_positions, ignore_index=ignored_index)
            loss = (start_loss + end_loss) / 2

        return QuestionAnsweringModelOutput(
            loss=loss, start_logits=start_logits, end_logits=end_logits, hidden_states=outputs.hidden_states
        )


class ScratchTransformerLMHead(nn.Module):
    """BERT's MLM head: dense -> activation -> LayerNorm, then a decoder onto the vocabulary whose weight is
    the input word-embedding matrix (tied) plus its own bias."""

    def __init__(self, config: ScratchTransformerConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = ACT2FN[config.hidden_act]
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.layer_norm(self.activation(self.dense(hidden_states)))  # (B, S, H)
        return self.decoder(hidden_states)  # (B, S, V)


class ScratchTransformerForMaskedLM(ScratchTransformerPreTrainedModel):
    # transformers v5 declares tying as {tied parameter: source parameter}; the tie is applied in
    # `post_init` and after loading, only while `config.tie_word_embeddings` is True, and the tied copy is
    # not written to the checkpoint.
    _tied_weights_keys = {"lm_head.decoder.weight": "transformer.embeddings.word_embeddings.weight"}

    def __init__(self, config: ScratchTransformerConfig):
        super().__init__(config)
        self.transformer = ScratchTransformerModel(config)
        self.lm_head = ScratchTransformerLMHead(config)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear):
        self.lm_head.decoder = new_embeddings

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,  # (B, S) original ids at masked positions, -100 elsewhere
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> MaskedLMOutput:
        outputs = self.transformer(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        hidden = outputs.last_hidden_state  # (B, S, H)

        loss = None
        if labels is None:
            logits = self.lm_head(hidden)  # (B, S, V)
        else:
            # With labels, score only the masked positions (about 15%): projecting every position onto the
            # vocabulary would be most of the step's work. The logits returned are then (M, V), M = masked tokens.
            masked = labels != -100  # (B, S)
            logits = self.lm_head(hidden[masked])  # (M, V)
            if masked.any():
                loss = masked_lm_loss(logits, labels[masked])
            else:  # a batch without masked tokens teaches nothing; keep the graph, avoid a NaN mean
                loss = hidden.sum() * 0.0
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)


# ---------------------------------------------------------------------------------------------------------------------
# ELECTRA pretraining (Clark et al. 2020): a small masked-LM generator fills the masked positions with sampled
# tokens, and the encoder (the discriminator) learns from every token whether it was replaced.


def generator_config(config: ScratchTransformerConfig) -> ScratchTransformerConfig:
    """The discriminator's config scaled by `config.generator_size` (ELECTRA: 1/4 for small models).

    Heads scale and keep their width, so hidden_size stays a multiple of the head count (256 wide, 4 heads, 0.25
    -> 64 wide, 1 head); the feed-forward width scales alike; the number of layers stays the same.
    """
    size = getattr(config, "generator_size", 0.25)
    head_dim = config.hidden_size // config.num_attention_heads
    heads = max(1, round(config.num_attention_heads * size))
    generator = copy.deepcopy(config)
    generator.num_attention_heads = heads
    generator.hidden_size = heads * head_dim
    generator.intermediate_size = max(1, round(config.intermediate_size * size))
    return generator


class ScratchTransformerGenerator(nn.Module):
    """The generator's encoder: shared embeddings (width H) projected down to its width h, then its own blocks."""

    def __init__(self, config: ScratchTransformerConfig, generator: ScratchTransformerConfig):
        super().__init__()
        self.embeddings_project = nn.Linear(config.hidden_size, generator.hidden_size)
        self.layers = nn.ModuleList([ScratchTransformerLayer(generator) for _ in range(generator.num_hidden_layers)])
        pre_norm = generator.norm_position == "pre"  # pre-LN needs one LayerNorm at the end (as the encoder)
        self.final_layer_norm = nn.LayerNorm(generator.hidden_size, eps=generator.layer_norm_eps) if pre_norm else None

    def forward(self, embeddings: torch.Tensor, keep_mask: torch.Tensor | None) -> torch.Tensor:
        hidden_states = self.embeddings_project(embeddings)  # (B, S, H) -> (B, S, h)
        for layer in self.layers:
            hidden_states = layer(hidden_states, keep_mask)
        if self.final_layer_norm is not None:
            hidden_states = self.final_layer_norm(hidden_states)
        return hidden_states  # (B, S, h)


class ScratchTransformerGeneratorHead(nn.Module):
    """ElectraGeneratorPredictions: dense h -> H, activation, LayerNorm, then the shared word-embedding matrix
    (transposed) plus its own bias onto the vocabulary. The projection back up is what lets a narrow generator
    tie its output layer to the discriminator's embeddings."""

    def __init__(self, config: ScratchTransformerConfig, generator: ScratchTransformerConfig):
        super().__init__()
        self.dense = nn.Linear(generator.hidden_size, config.hidden_size)
        self.activation = ACT2FN[config.hidden_act]
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        hidden_states = self.layer_norm(self.activation(self.dense(hidden_states)))  # (M, h) -> (M, H)
        return F.linear(hidden_states, word_embeddings, self.bias)  # (M, V)


@dataclass
class ScratchTransformerForPreTrainingOutput(ModelOutput):
    """loss = generator MLM loss + rtd_weight x discriminator BCE. The other fields are (1,) sums over the batch,
    so that an evaluation can add them up exactly across batches (the Trainer concatenates them)."""

    loss: torch.Tensor | None = None
    generator_loss_sum: torch.Tensor | None = None  # cross-entropy summed over the masked tokens
    masked_tokens: torch.Tensor | None = None
    rtd_correct: torch.Tensor | None = None  # scored tokens the discriminator got right
    scored_tokens: torch.Tensor | None = None
    replaced_tokens: torch.Tensor | None = None  # scored tokens whose sampled token differs from the original
    replaced_detected: torch.Tensor | None = None  # replaced tokens the discriminator called replaced


class ScratchTransformerForPreTraining(ScratchTransformerPreTrainedModel):
    """ELECTRA replaced-token detection. `self.transformer` is the discriminator's encoder, under the same name as
    in every other head, so a saved folder fine-tunes as a classifier or QA model; the generator and the RTD head
    are then unexpected keys and are dropped. The generator shares `self.transformer.embeddings` (token, position
    and segment tables) and ties its output layer to the word embeddings.

    Config fields read besides the encoder's: generator_size (default 0.25), rtd_weight (default 50, as ELECTRA).
    """

    def __init__(self, config: ScratchTransformerConfig):
        super().__init__(config)
        self.transformer = ScratchTransformerModel(config)
        small = generator_config(config)
        self.generator = ScratchTransformerGenerator(config, small)
        self.generator_head = ScratchTransformerGeneratorHead(config, small)
        # ElectraDiscriminatorPredictions: dense, activation, one logit per token.
        self.discriminator_dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.discriminator_activation = ACT2FN[config.hidden_act]
        self.discriminator_head = nn.Linear(config.hidden_size, 1)
        self.post_init()

    def replace_masked_tokens(self, input_ids, labels, token_type_ids, position_ids, keep_mask):
        """Generator pass: its MLM loss on the masked positions, and input_ids with those positions replaced by
        tokens sampled from its softmax (no gradient flows through the sampling)."""
        embeddings = self.transformer.embeddings(input_ids, token_type_ids, position_ids, None)  # (B, S, H)
        hidden = self.generator(embeddings, keep_mask)  # (B, S, h)
        masked = labels != -100  # (B, S)
        logits = self.generator_head(hidden[masked], self.transformer.get_input_embeddings().weight)  # (M, V)
        loss_sum = masked_lm_loss(logits, labels[masked], reduction="sum")
        with torch.no_grad():
            sampled = torch.multinomial(torch.softmax(logits.float(), dim=-1), 1).squeeze(-1)  # (M,)
        corrupted = input_ids.clone()
        corrupted[masked] = sampled
        return corrupted, loss_sum, masked

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,  # (B, S), [MASK] at the masked positions
        attention_mask: torch.Tensor | None = None,  # (B, S)
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,  # (B, S) original ids at masked positions, -100 elsewhere
        scored_mask: torch.Tensor | None = None,  # (B, S) True = scored (not special, not padding)
        **kwargs,
    ) -> ScratchTransformerForPreTrainingOutput:
        if input_ids is None or labels is None:
            raise ValueError("ELECTRA pretraining needs input_ids (with [MASK]) and labels (the masked originals).")
        if scored_mask is None:  # without the collator's mask: every non-padding token
            no_padding = torch.ones_like(input_ids, dtype=torch.bool)
            scored_mask = no_padding if attention_mask is None else attention_mask.bool()
        keep_mask = padding_keep_mask(attention_mask)

        corrupted, generator_loss_sum, masked = self.replace_masked_tokens(
            input_ids, labels, token_type_ids, position_ids, keep_mask
        )
        original = torch.where(masked, labels, input_ids)  # (B, S)
        # A sampled token equal to the original counts as original (ELECTRA): the label is "replaced?", not "masked?".
        replaced = (corrupted != original) & scored_mask  # (B, S)

        hidden = self.transformer(
            corrupted,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            return_dict=True,
        ).last_hidden_state  # (B, S, H)
        rtd_logits = self.discriminator_head(self.discriminator_activation(self.discriminator_dense(hidden)))
        rtd_logits = rtd_logits.squeeze(-1).float()  # (B, S)
        rtd_loss = F.binary_cross_entropy_with_logits(rtd_logits[scored_mask], replaced[scored_mask].float())

        masked_tokens = masked.sum()
        # A batch without masked tokens keeps the graph and avoids a NaN mean (as ScratchTransformerForMaskedLM).
        generator_loss = generator_loss_sum / masked_tokens.clamp(min=1)
        loss = generator_loss + getattr(self.config, "rtd_weight", 50.0) * rtd_loss
        with torch.no_grad():
            predicted = rtd_logits > 0
            correct = (predicted == replaced) & scored_mask
        return ScratchTransformerForPreTrainingOutput(
            loss=loss,
            generator_loss_sum=generator_loss_sum.detach().reshape(1),
            masked_tokens=masked_tokens.reshape(1).float(),
            rtd_correct=correct.sum().reshape(1).float(),
            scored_tokens=scored_mask.sum().reshape(1).float(),
            replaced_tokens=replaced.sum().reshape(1).float(),
            replaced_detected=(predicted & replaced).sum().reshape(1).float(),
        )


__all__ = [
    "ScratchTransformerForPreTraining",
    "ScratchTransformerPreTrainedModel",
    "ScratchTransformerModel",
    "ScratchTransformerForSequenceClassification",
    "ScratchTransformerForQuestionAnswering",
    "ScratchTransformerForMaskedLM",
]
