"""Teacher-labelled augmentation for task distillation: new training texts made from train examples, never from dev.

Tang et al. (2019) make each new text from one train text with three rules: each word is masked with probability
p_mask (0.1), or swapped for another word of the same part of speech with probability p_pos (0.1); then, with
probability p_ng (0.25), only a random n-gram (n in 1..5) of the text is kept. The part-of-speech swap needs a tagger,
which is not among our dependencies. TinyBERT (Jiao et al. 2020) swaps a word for one of its nearest neighbours in
GloVe instead. We do the same with the teacher's own input-embedding table (`word_neighbours`): a word that is one
whole token of the teacher's vocabulary may become one of its 15 nearest whole-word tokens by cosine. Masking and
n-grams only rearrange and hide the train words; the swap brings in words the train set does not have, which is
where TinyBERT found most of augmentation's gain. The teacher labels every new text (pipelines/distillation.py).
"""

from __future__ import annotations

import logging
import random
import re

import datasets
import torch

logger = logging.getLogger("pipelines")

NEIGHBOURS = 15  # TinyBERT's K

# A whitespace-separated word of the data: punctuation before, the word, punctuation after ('"house.",' ->
# '"', 'house', '.",'). The swap replaces the middle and keeps the punctuation.
WORD_PARTS = re.compile(r"(\W*)(.*?)(\W*)", re.DOTALL)


def word_parts(word: str) -> tuple[str, str, str]:
    return WORD_PARTS.fullmatch(word).groups()


def augment_text(
    text: str,
    rng: random.Random,
    mask_token: str,
    neighbours: dict[str, list[str]] | None = None,
    p_mask: float = 0.1,
    p_swap: float = 0.0,
    p_ngram: float = 0.25,
) -> str:
    """One new text from `text`: each word masked (p_mask) or swapped for a neighbour (p_swap, words in
    `neighbours` only); then with probability p_ngram only one random n-gram kept."""
    words = []
    for word in text.split():
        draw = rng.random()  # one draw per word, so p_swap=0 makes exactly the texts it made before the swap existed
        if draw < p_mask:
            word = mask_token
        elif draw < p_mask + p_swap and neighbours:
            word = swap_word(word, neighbours, rng)
        words.append(word)
    if words and rng.random() < p_ngram:
        n = min(rng.randint(1, 5), len(words))
        start = rng.randint(0, len(words) - n)
        words = words[start : start + n]
    return " ".join(words)


def swap_word(word: str, neighbours: dict[str, list[str]], rng: random.Random) -> str:
    """One of the word's neighbours, with its capital and the punctuation around it; the word itself if it has none."""
    before, core, after = word_parts(word)
    if core.lower() not in neighbours:
        return word
    swapped = rng.choice(neighbours[core.lower()])
    return before + (swapped.capitalize() if core[0].isupper() else swapped) + after


def augment_examples(
    train: datasets.Dataset,
    fields: tuple[str, ...],
    n: int,
    seed: int,
    mask_token: str,
    neighbours: dict[str, list[str]] | None = None,
    p_swap: float = 0.0,
) -> datasets.Dataset:
    """n new examples made from random train examples by rewriting their `fields`; none is a train example itself
    or a repeat. The other columns are the source example's (a QA question keeps its context), with new `idx` and
    `id` values; `label`, where there is one, is a placeholder 0: the teacher labels the new examples."""
    rng = random.Random(seed)
    texts = list(zip(*(train[name] for name in fields)))
    seen = set(texts)
    made, sources = [], []
    for _ in range(n * 50):  # short texts can run out of new variants: stop rather than loop for ever
        if len(made) == n:
            break
        source = rng.randrange(len(texts))
        new = tuple(augment_text(text, rng, mask_token, neighbours, p_swap=p_swap) for text in texts[source])
        if all(t.strip() for t in new) and new not in seen:
            seen.add(new)
            made.append(new)
            sources.append(source)
    if len(made) < n:
        logger.warning(
            "distill_augment: made %d of %d new examples (the train texts have no more variants)", len(made), n
        )
    replaced = {name: [example[i] for example in made] for i, name in enumerate(fields)}
    if "idx" in train.column_names:
        start = max(train["idx"]) + 1 if len(train) else 0
        replaced["idx"] = list(range(start, start + len(made)))
    if "id" in train.column_names:
        ids = train["id"]
        replaced["id"] = [f"{ids[source]}-augmented-{k}" for k, source in enumerate(sources)]
    if "label" in train.column_names:
        replaced["label"] = [0] * len(made)
    augmented = train.select(sources)
    for name, values in replaced.items():
        feature = augmented.features[name]
        augmented = augmented.remove_columns(name).add_column(name, values, feature=feature)
    return augmented


def word_neighbours(
    embeddings: torch.Tensor, vocab: dict[str, int], words: set[str], k: int = NEIGHBOURS
) -> dict[str, list[str]]:
    """For each of `words` (lower-cased, punctuation around it set aside: "House." -> "house") that is one whole
    token of `vocab`, its k nearest whole-word tokens by cosine of `embeddings` (the teacher's input table, (V, d)).
    Whole words: alphabetic tokens of 2+ letters, so no '##' pieces, punctuation, numbers or special tokens."""
    candidates = sorted((token, index) for token, index in vocab.items() if token.isalpha() and len(token) > 1)
    tokens = [token for token, _ in candidates]
    row_of = {token: row for row, token in enumerate(tokens)}
    queries = sorted({word_parts(word)[1].lower() for word in words} & row_of.keys())
    if not queries:
        return {}
    table = torch.nn.functional.normalize(embeddings.detach().float()[[index for _, index in candidates]], dim=-1)
    neighbours = {}
    for start in range(0, len(queries), 1024):  # (1024, C) similarities at a time: a few MB, not V x V
        chunk = queries[start : start + 1024]
        rows = torch.tensor([row_of[word] for word in chunk])
        similarity = table[rows] @ table.T  # (chunk, C)
        similarity[torch.arange(len(chunk)), rows] = -2.0  # never the word itself
        nearest = similarity.topk(min(k, len(tokens) - 1), dim=-1).indices
        for word, indices in zip(chunk, nearest.tolist()):
            neighbours[word] = [tokens[i] for i in indices]
    return neighbours
