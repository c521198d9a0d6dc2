"""The cheapest pretraining: word vectors by skip-gram with negative sampling (word2vec; Mikolov et al. 2013).

Our transformer pretraining (MLM, ELECTRA; pipelines/tasks/mlm.py) spent up to 4e14 FLOPs on the train-side corpus and
bought nothing downstream. Before BERT, NLI and QA models gained from pretrained word vectors alone (ESIM and BiDAF
start from GloVe), and skip-gram learns from every token of the corpus at about 10 kFLOP per (word, context) pair:
a pass over our 4.8 M-token corpus (15.6 M pairs) costs about 1.4e11 FLOPs, 1/3000 of the 2,400-step MLM run.

    python scripts/train_word_vectors.py configs/pretraining/en_trainside_word_vectors_cpu.yaml

For every token of a line (the scratch model's own tokenizer, so the vectors are rows of its word table), each token
at most `window` positions away is a context (nearer ones more often, as word2vec's shrinking window does); frequent
tokens are dropped at random (Mikolov's subsampling, threshold `subsample`); the loss is word2vec's: log sigmoid of
the (input vector . output vector) of a true pair, plus that of `negatives` pairs whose context is drawn from the
unigram distribution to the 3/4. The held-out lines give the same loss with fixed draws after every epoch: a run
that did not learn shows it there.

The result is a checkpoint of the scratch preset (`scratch_preset`, `config_overrides`, random weights from `seed`
like any scratch model) whose word table holds the input vectors, rescaled to the table's initial standard deviation
so that they keep the balance with the random position table. It fine-tunes like any self-pretrained checkpoint
(`model_name_or_path: <output_dir>`); word_vectors.json records the corpus, the pairs, the FLOPs, the losses and the
time.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModelForMaskedLM

from pipelines import model_loading
from pipelines.arguments import ModelArguments, RecipeError, parse_recipe
from pipelines.distillation_augment import word_neighbours

logger = logging.getLogger("pipelines")
INFO_FILE = "word_vectors.json"  # beside the checkpoint: what the vectors cost (pipelines/compute_curve.py reads it)


@dataclass
class WordVectorArguments:
    train_files: list[str] = field(default_factory=list, metadata={"help": "Text files, one passage per line."})
    validation_file: str | None = field(default=None, metadata={"help": "Held-out lines: the loss after each epoch."})
    output_dir: str = field(default="outputs/pretraining/word_vectors", metadata={"help": "Where the checkpoint goes."})
    window: int = field(default=5, metadata={"help": "Contexts up to this many tokens away (word2vec's default)."})
    negatives: int = field(default=5, metadata={"help": "Negative contexts per true pair."})
    subsample: float = field(default=1e-4, metadata={"help": "Mikolov's subsampling threshold (0: keep every token)."})
    epochs: float = field(
        default=3.0,
        metadata={"help": "Passes over the corpus (new subsampling and windows each); a fraction stops inside a pass."},
    )
    learning_rate: float = field(default=1e-2, metadata={"help": "Adam's peak rate, decayed linearly to 0."})
    batch_size: int = field(default=16384, metadata={"help": "True pairs per step."})
    max_lines: int | None = field(default=None, metadata={"help": "Read only the first N lines of the corpus."})
    seed: int = field(default=42, metadata={"help": "Subsampling, windows, negatives and the model's random init."})

    def __post_init__(self):
        if not self.train_files:
            raise RecipeError("train_files: give one or more text files (one passage per line)")
        for name in ("window", "negatives", "batch_size"):
            if getattr(self, name) < 1:
                raise RecipeError(f"{name} is {getattr(self, name)}; it must be at least 1")
        if not self.epochs > 0:
            raise RecipeError(f"epochs is {self.epochs}; it must be above 0 (a fraction is part of a pass)")


# --- Data ---------------------------------------------------------------------------------------------------


def read_token_lines(files: list[str], tokenizer, max_lines: int | None = None) -> list[np.ndarray]:
    """Each non-empty line as an array of token ids (no special tokens)."""
    lines = []
    for name in files:
        path = Path(name)
        if not path.is_file():
            raise RecipeError(f"train_files: {path} is not a file")
        lines += [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    lines = lines[:max_lines]
    ids = []
    for start in range(0, len(lines), 2048):
        batch = tokenizer(lines[start : start + 2048], add_special_tokens=False)["input_ids"]
        ids += [np.asarray(row, dtype=np.int64) for row in batch if len(row) > 1]
    return ids


def skipgram_pairs(
    lines: list[np.ndarray], window: int, keep: np.ndarray | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(centres, contexts) of one pass: subsampled tokens (kept with probability keep[id]), pairs within a line;
    a context d tokens away is kept with probability (window - d + 1) / window, as word2vec's random window."""
    kept = [line[rng.random(len(line)) < keep[line]] if keep is not None else line for line in lines]
    flat = np.concatenate(kept)
    line_of = np.repeat(np.arange(len(kept)), [len(line) for line in kept])
    centres, contexts = [], []
    for d in range(1, window + 1):
        same_line = line_of[:-d] == line_of[d:]
        chosen = same_line & (rng.random(len(flat) - d) < (window - d + 1) / window)
        left, right = flat[:-d][chosen], flat[d:][chosen]
        centres += [left, right]
        contexts += [right, left]
    return np.concatenate(centres), np.concatenate(contexts)


def keep_probabilities(counts: np.ndarray, threshold: float) -> np.ndarray | None:
    """Mikolov's subsampling: a token of frequency f is kept with probability min(1, sqrt(t/f) + t/f)."""
    if not threshold:
        return None
    frequency = counts / counts.sum()
    with np.errstate(divide="ignore"):
        ratio = np.where(frequency > 0, threshold / frequency, np.inf)
    return np.minimum(1.0, np.sqrt(ratio) + ratio)


# --- The model ----------------------------------------------------------------------------------------------


class SkipGram(torch.nn.Module):
    def __init__(self, vocab_size: int, width: int):
        super().__init__()
        self.inputs = torch.nn.Embedding(vocab_size, width)
        self.outputs = torch.nn.Embedding(vocab_size, width)
        torch.nn.init.uniform_(self.inputs.weight, -0.5 / width, 0.5 / width)  # word2vec's start
        torch.nn.init.zeros_(self.outputs.weight)

    def forward(self, centres, contexts, negatives):
        """Mean over pairs of -[log sig(u.v) + sum_k log sig(-u.n_k)]. centres, contexts: (B,); negatives: (B, K)."""
        u = self.inputs(centres)  # (B, H)
        positive = (u * self.outputs(contexts)).sum(-1)  # (B,)
        negative = torch.bmm(self.outputs(negatives), u.unsqueeze(-1)).squeeze(-1)  # (B, K)
        return -(F.logsigmoid(positive) + F.logsigmoid(-negative).sum(-1)).mean()


def pair_flops(width: int, negatives: int) -> int:
    """One pair: 1 + K dot products of `width` (2 FLOPs a term), forward and twice that backward."""
    return 3 * 2 * (1 + negatives) * width


@torch.no_grad()
def heldout_loss(model, pairs, noise: torch.Tensor, negatives: int, batch_size: int) -> float:
    generator = torch.Generator().manual_seed(0)  # the same negatives after every epoch
    total, count = 0.0, 0
    for start in range(0, len(pairs[0]), batch_size):
        centres = torch.from_numpy(pairs[0][start : start + batch_size])
        contexts = torch.from_numpy(pairs[1][start : start + batch_size])
        drawn = torch.multinomial(noise, len(centres) * negatives, replacement=True, generator=generator)
        total += float(model(centres, contexts, drawn.view(len(centres), negatives))) * len(centres)
        count += len(centres)
    return total / max(count, 1)


# --- A run --------------------------------------------------------------------------------------------------


def train_word_vectors(args: WordVectorArguments, model_args: ModelArguments) -> dict:
    """Train the vectors, write the checkpoint into output_dir (built beside it, renamed into place); returns
    word_vectors.json's content."""
    output = Path(args.output_dir)
    if output.exists() and any(output.iterdir()):
        raise RecipeError(f"output_dir: {output} is not empty (a finished run is never overwritten); choose another")
    if model_args.scratch_preset is None:
        raise RecipeError("scratch_preset: word vectors start a scratch model; name its preset (e.g. small-3l-4h)")
    tokenizer = model_loading.load_tokenizer(model_args)
    torch.manual_seed(args.seed)
    model = model_loading.load_model(model_args, AutoModelForMaskedLM, tokenizer)  # the scratch init, from seed
    table = model.get_input_embeddings().weight  # (V, H)
    vocab_size, width = table.shape

    started = time.perf_counter()
    lines = read_token_lines(args.train_files, tokenizer, args.max_lines)
    counts = np.bincount(np.concatenate(lines), minlength=vocab_size).astype(np.float64)
    keep = keep_probabilities(counts, args.subsample)
    noise = torch.from_numpy(counts**0.75).float()
    rng = np.random.default_rng(args.seed)
    heldout = None
    if args.validation_file:
        heldout_lines = read_token_lines([args.validation_file], tokenizer)
        heldout = skipgram_pairs(heldout_lines, args.window, None, np.random.default_rng(0))
    logger.info("Word vectors: %d lines, %d tokens, vocabulary %d, width %d", len(lines), counts.sum(), *table.shape)

    skipgram = SkipGram(vocab_size, width)
    # Dense Adam (the fused kernel): on 2 CPU cores it measured faster than SparseAdam on sparse gradients, whose
    # coalescing costs more than updating the whole (V, H) tables.
    optimizer = torch.optim.Adam(skipgram.parameters(), lr=args.learning_rate, fused=True)
    generator = torch.Generator().manual_seed(args.seed)
    history, pairs_seen, step, total_steps = [], 0, 0, None
    for epoch in range(math.ceil(args.epochs)):
        centres, contexts = skipgram_pairs(lines, args.window, keep, rng)
        if total_steps is None:  # word2vec's linear decay to 0, over the steps the first pass predicts
            total_steps = max(1, round(args.epochs * math.ceil(len(centres) / args.batch_size)))
            schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / total_steps))
        order = rng.permutation(len(centres))
        centres, contexts = torch.from_numpy(centres[order]), torch.from_numpy(contexts[order])
        running, used = [], 0
        for start in range(0, len(centres), args.batch_size):
            if step == total_steps:  # a fractional budget ends inside its last pass
                break
            batch = slice(start, start + args.batch_size)
            size = len(centres[batch])
            drawn = torch.multinomial(noise, size * args.negatives, replacement=True, generator=generator)
            loss = skipgram(centres[batch], contexts[batch], drawn.view(size, args.negatives))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            used += size
            running.append(loss.item())
        pairs_seen += used
        record = {"epoch": epoch + 1, "pairs": used, "train_loss": float(np.mean(running[-200:]))}
        if heldout is not None:
            record["heldout_loss"] = heldout_loss(skipgram, heldout, noise, args.negatives, args.batch_size)
        history.append(record)
        logger.info("Word vectors, epoch %d: %s", epoch + 1, record)
    seconds = time.perf_counter() - started

    vectors = skipgram.inputs.weight.detach()
    with torch.no_grad():
        table.copy_(vectors * (model.config.initializer_range / vectors.std()))
        padding = model.get_input_embeddings().padding_idx
        if padding is not None:
            table[padding].zero_()
    # A look at what was learned: the nearest whole words of a few words (the distillation swap's lookup).
    neighbours = word_neighbours(vectors, tokenizer.get_vocab(), {"big", "said", "city", "never", "woman"}, k=5)
    logger.info("Nearest tokens: %s", neighbours)
    info = {
        "objective": "skip-gram with negative sampling (word2vec)",
        "arguments": asdict(args),
        "model": {"scratch_preset": model_args.scratch_preset, "config_overrides": model_args.config_overrides},
        "tokenizer": model_args.tokenizer_name,
        "lines": len(lines),
        "tokens": int(counts.sum()),
        "pairs_seen": pairs_seen,
        "steps": step,
        "flops": pairs_seen * pair_flops(width, args.negatives),
        "seconds": round(seconds, 1),
        "history": history,
        "nearest_tokens": neighbours,
        "scale": "input vectors rescaled to the word table's initial standard deviation (initializer_range)",
    }
    partial = output.with_name(output.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    if output.exists():  # empty (checked above)
        output.rmdir()
    partial.rename(output)
    logger.info("Word vectors: %.3g FLOPs in %.0f s; checkpoint %s", info["flops"], seconds, output)
    return info


def main(argv: list[str] | None = None) -> dict:
    args, model_args, _resolved = parse_recipe([WordVectorArguments, ModelArguments], argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    return train_word_vectors(args, model_args)
