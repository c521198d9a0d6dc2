"""Has a pretrained encoder collapsed? The mean cosine between its positions' hidden states, layer by layer.

A pretraining run can sit on a plateau where every position's output is nearly the same vector: MLM then predicts
the unigram distribution and ELECTRA's discriminator calls every token "original". The gate (held-out MLM loss, RTD
recall) says *that* a checkpoint did not learn; this says what its representations look like:

- `mean_cosine[layer]`: mean cosine similarity between the hidden states of all pairs of positions of a block, for
  the embeddings and after each layer (1.0 = every position carries the same vector: a collapsed representation);
- `mean_norm[layer]`: the mean length of those hidden states (a pre-LN residual stream that grows layer after layer
  is where a shared direction takes over);
- `attention_entropy[layer]`: the entropy of each query's attention weights over the keys, averaged over queries and
  heads and divided by log(S) (1.0 = uniform attention, which gives every position the same average of the values:
  the shared vector a collapse is made of; near 0 = each query reads one key, and in a collapse every query reads
  the same one). Read from our ScratchTransformer's attention (its `project` method); empty for other encoders.

    python scripts/probe_encoder.py --checkpoints outputs/pretraining/<run>/checkpoint-75 ... \
      --text outputs/corpus/en_trainside/heldout.txt
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerBase
from transformers.utils import logging as transformers_logging

from pipelines.data_files import DataError
from pipelines.tasks.mlm import pack_into_blocks


@dataclass
class ProbeArguments:
    checkpoints: list[str] = field(metadata={"help": "Checkpoint folders (any encoder AutoModel loads)."})
    text: str = field(metadata={"help": "Held-out text, one line per example (never training text)."})
    blocks: int = field(default=8, metadata={"help": "How many blocks of held-out text to probe."})
    block_size: int = field(default=128, metadata={"help": "Tokens per block, [CLS] and [SEP] included."})
    trust_remote_code: bool = field(default=False)


def held_out_blocks(tokenizer: PreTrainedTokenizerBase, path: str | Path, blocks: int, block_size: int) -> torch.Tensor:
    """The first `blocks` packed blocks of a text file, as pretraining packs them. (blocks, block_size)"""
    ids, tokens, needed = [], 0, blocks * (block_size - 2)
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                ids.append(tokenizer(line.strip())["input_ids"][1:])  # drop [CLS], keep the line's [SEP]
                tokens += len(ids[-1])
                if tokens >= needed:
                    break
    packed = pack_into_blocks({"input_ids": ids}, block_size, tokenizer.cls_token_id, tokenizer.sep_token_id)
    if len(packed["input_ids"]) < blocks:
        raise DataError(f"{path}: only {len(packed['input_ids'])} blocks of {block_size} tokens, {blocks} asked for")
    return torch.tensor(packed["input_ids"][:blocks])


def mean_pairwise_cosine(hidden: torch.Tensor) -> float:
    """(B, S, H) -> mean over blocks of the mean cosine similarity of all position pairs (diagonal included)."""
    unit = torch.nn.functional.normalize(hidden.float(), dim=-1)
    return (unit @ unit.transpose(1, 2)).mean().item()


def attention_entropy(attention: torch.nn.Module, hidden: torch.Tensor) -> float:
    """Mean entropy / log(S) of one ScratchTransformer attention's weights for its (B, S, H) input."""
    query, key, _ = attention.project(hidden)  # each (B, N, S, D)
    probs = torch.softmax(query @ key.transpose(-1, -2) * attention.head_dim**-0.5, dim=-1)  # (B, N, S, S)
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1)  # (B, N, S)
    return entropy.mean().item() / math.log(hidden.shape[1])


@torch.no_grad()
def probe_encoder(model, input_ids: torch.Tensor) -> dict:
    """Per-layer mean cosine, mean norm and (ScratchTransformer only) attention entropy on (B, S) blocks."""
    model.eval()
    entropies, hooks = [], []
    for module in model.modules():
        if hasattr(module, "project") and hasattr(module, "num_heads"):  # ScratchTransformerSelfAttention, in order
            hooks.append(
                module.register_forward_pre_hook(lambda m, args: entropies.append(attention_entropy(m, args[0])))
            )
    try:
        hidden_states = model(input_ids, output_hidden_states=True, return_dict=True).hidden_states
    finally:
        for hook in hooks:
            hook.remove()
    return {
        "mean_cosine": [mean_pairwise_cosine(h) for h in hidden_states],  # embeddings, then each layer
        "mean_norm": [h.float().norm(dim=-1).mean().item() for h in hidden_states],
        "attention_entropy": entropies,  # one per layer
    }


def probe_checkpoints(args: ProbeArguments) -> list[dict]:
    rows = []
    transformers_logging.set_verbosity_error()  # a pretraining checkpoint's generator and heads are expected extras
    for checkpoint in args.checkpoints:
        tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        model = AutoModel.from_pretrained(checkpoint, trust_remote_code=args.trust_remote_code)
        input_ids = held_out_blocks(tokenizer, args.text, args.blocks, args.block_size)
        rows.append({"checkpoint": checkpoint, **probe_encoder(model, input_ids)})
    return rows


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| checkpoint | mean cosine, last layer | mean cosine by layer | hidden-state norm by layer "
        "| attention entropy / log S by layer |",
        "|---|---:|---|---|---|",
    ]
    for row in rows:
        by_layer = " / ".join(f"{value:.2f}" for value in row["mean_cosine"])
        norms = " / ".join(f"{value:.1f}" for value in row["mean_norm"])
        entropy = " / ".join(f"{value:.3f}" for value in row["attention_entropy"]) or "—"
        lines.append(f"| {row['checkpoint']} | {row['mean_cosine'][-1]:.3f} | {by_layer} | {norms} | {entropy} |")
    return "\n".join(lines)
