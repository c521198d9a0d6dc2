"""Extractive QA's windows: questions -> token windows (features), and the windows' logits -> answer texts.

A long context does not fit in one window of `max_seq_length` tokens, so it is split into overlapping windows
(`doc_stride` tokens shared by consecutive windows). Each question therefore has one or more features, and
post-processing gathers the candidate spans of all its windows. Training, evaluation (pipelines/tasks/qa.py) and
the inference pipeline (pipelines/inference.py) share these functions, so they cut and decode the same way.
"""

from __future__ import annotations

import collections
from typing import Any

import datasets
import numpy as np
from scipy.special import softmax

from pipelines.arguments import RecipeError

# `data_args` below: anything with max_seq_length, doc_stride, max_query_length and pad_to_max_length, i.e. qa.py's
# QADataArguments or inference.py's WindowSettings. This module imports neither (qa.py imports this one).

# Columns of the eval features that post-processing (or sorting) needs but the model must not receive.
EVAL_ONLY_COLUMNS = ["example_id", "offset_mapping", "length"]


# --------------------------------------------------------------------------------------------------------------
# 1. Preprocessing: questions -> windows
# --------------------------------------------------------------------------------------------------------------


def preprocess(raw: datasets.DatasetDict, tokenizer, data_args, training_args) -> datasets.DatasetDict:
    """Tokenize every split into windows: "train" with answer positions, "validation" with example_id and offsets.

    The validation features keep `EVAL_ONLY_COLUMNS` for post-processing; give the model
    `features["validation"].remove_columns(EVAL_ONLY_COLUMNS)` (the Trainer also drops them itself when
    `remove_unused_columns` is on). With `sort_eval_by_length` they come longest first; post-processing pairs
    logits with windows by row, so predict on these very features, in this order.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise RecipeError(
            "QA preprocessing needs a fast tokenizer (character offsets of tokens); "
            f"{type(tokenizer).__name__} is not one."
        )
    map_options = dict(
        batched=True,
        num_proc=data_args.preprocessing_num_workers,
        load_from_cache_file=not data_args.overwrite_cache,
        fn_kwargs={"tokenizer": tokenizer, "data_args": data_args},
    )
    features = datasets.DatasetDict()
    if "train" in raw:
        with training_args.main_process_first(desc="train windows"):
            features["train"] = raw["train"].map(
                prepare_train_features, remove_columns=raw["train"].column_names, desc="Train windows", **map_options
            )
    if "validation" in raw:
        with training_args.main_process_first(desc="validation windows"):
            features["validation"] = raw["validation"].map(
                prepare_eval_features,
                remove_columns=raw["validation"].column_names,
                desc="Validation windows",
                **map_options,
            )
            if data_args.sort_eval_by_length:
                features["validation"] = features["validation"].sort("length", reverse=True)
    return features


def prepare_train_features(examples: dict[str, list], tokenizer, data_args):
    """Windows of a batch of questions, each labelled with the token positions of the (first) gold answer.

    A window that does not hold the whole answer is labelled with its CLS token as start and end, which
    teaches the model to put its "no answer here" mass on CLS (post-processing never picks CLS).
    """
    windows, context_sequence = _tokenize_windows(examples, tokenizer, data_args)
    window_to_example = windows.pop("overflow_to_sample_mapping")
    offsets_per_window = windows.pop("offset_mapping")
    windows["start_positions"], windows["end_positions"] = [], []
    for w, offsets in enumerate(offsets_per_window):
        answers = examples["answers"][window_to_example[w]]
        start_char = answers["answer_start"][0]
        end_char = start_char + len(answers["text"][0])
        sequence_ids = windows.sequence_ids(w)
        context_tokens = [k for k, sequence in enumerate(sequence_ids) if sequence == context_sequence]
        span = _answer_token_span(offsets, context_tokens, start_char, end_char)
        if span is None:
            cls_index = _cls_index(windows["input_ids"][w], tokenizer)
            span = (cls_index, cls_index)
        windows["start_positions"].append(span[0])
        windows["end_positions"].append(span[1])
    return windows


def prepare_eval_features(examples: dict[str, list], tokenizer, data_args):
    """Windows of a batch of questions, each with the id of its question and the character offsets of its tokens.

    Offsets of tokens outside the context (question, special tokens, padding) are set to None, so that
    post-processing can tell a context token from the rest without the tokenizer.
    """
    windows, context_sequence = _tokenize_windows(examples, tokenizer, data_args)
    window_to_example = windows.pop("overflow_to_sample_mapping")
    windows["length"] = [len(ids) for ids in windows["input_ids"]]
    windows["example_id"] = []
    for w in range(len(windows["input_ids"])):
        sequence_ids = windows.sequence_ids(w)
        windows["example_id"].append(examples["id"][window_to_example[w]])
        windows["offset_mapping"][w] = [
            offset if sequence_ids[k] == context_sequence else None
            for k, offset in enumerate(windows["offset_mapping"][w])
        ]
    return windows


def _tokenize_windows(examples: dict[str, list], tokenizer, data_args):
    """Tokenize question + context into overlapping windows; returns the encoding and the context's sequence index.

    Only the context is truncated and windowed. A tokenizer that pads on the left (e.g. XLNet-style) puts
    the context first, so that the padding never sits between question and context.
    """
    context_first = tokenizer.padding_side == "left"
    # Some SQuAD questions start with long runs of spaces that would eat the window.
    questions = _cut_questions(
        [question.lstrip() for question in examples["question"]], tokenizer, data_args.max_query_length
    )
    contexts = examples["context"]
    windows = tokenizer(
        contexts if context_first else questions,
        questions if context_first else contexts,
        truncation="only_first" if context_first else "only_second",
        max_length=data_args.max_seq_length,
        stride=data_args.doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length" if data_args.pad_to_max_length else False,
    )
    return windows, (0 if context_first else 1)


def _cut_questions(questions: list[str], tokenizer, max_query_length: int) -> list[str]:
    """Cut each question after its first `max_query_length` tokens (at the character where that token ends)."""
    tokenized = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    cut = []
    for question, offsets in zip(questions, tokenized["offset_mapping"]):
        cut.append(question[: offsets[max_query_length - 1][1]] if len(offsets) > max_query_length else question)
    return cut


def _answer_token_span(offsets, context_tokens: list[int], start_char: int, end_char: int) -> tuple[int, int] | None:
    """Token positions (start, end) of the answer characters [start_char, end_char), or None if the window lacks
    part of it."""
    if not context_tokens:
        return None
    first, last = context_tokens[0], context_tokens[-1]
    if offsets[first][0] > start_char or offsets[last][1] < end_char:
        return None
    # The first and the last context token that overlap the answer's characters. Several tokens can share one
    # character (an uncased English vocabulary splits a Hangul syllable into jamo tokens with the same offsets):
    # the label is then the first token of the answer's first character, not the last.
    start = first
    while start < last and offsets[start][1] <= start_char:
        start += 1
    end = last
    while end > first and offsets[end][0] >= end_char:
        end -= 1
    return (start, end) if start <= end else None


def _cls_index(input_ids: list[int], tokenizer) -> int:
    if tokenizer.cls_token_id is not None and tokenizer.cls_token_id in input_ids:
        return input_ids.index(tokenizer.cls_token_id)
    return 0


# --------------------------------------------------------------------------------------------------------------
# 2. Post-processing: logits -> answer texts
# --------------------------------------------------------------------------------------------------------------


def postprocess_qa_predictions(
    examples,
    features,
    start_logits,
    end_logits,
    n_best_size: int = 20,
    max_answer_length: int = 30,
) -> tuple[dict[str, str], dict[str, list[dict[str, Any]]]]:
    """Turn the start/end logits of all windows into one answer text per question.

    `examples`: the raw questions (Dataset or dict of lists with "id" and "context").
    `features`: their eval windows, in the order the logits come in (Dataset or dict of lists with
    "example_id" and "offset_mapping", as `prepare_eval_features` makes them). Row i of the logits must belong
    to row i of `features`: predict with a sequential eval sampler (in transformers 5 the Trainer's
    `train_sampling_strategy="group_by_length"` also reorders evaluation and prediction batches).
    `start_logits`, `end_logits`: one row per window (an array [windows, tokens] or a list of rows); a row may be
    longer than its window (the Trainer pads the logits of shorter batches with -100): tokens past the window's
    length are ignored.

    For every window the `n_best_size` best starts and ends are paired; a pair is kept if both tokens are in the
    context, end >= start and the span is at most `max_answer_length` tokens. Its score is start + end logit.
    The same character span found in two overlapping windows is counted once, with its best score. The answer
    is the best span over all windows of the question, cut from the original context by character offsets, so
    its casing and spacing are the context's. A question with no valid span gets the empty answer.

    Returns (predictions: id -> text, nbest: id -> [{text, start_logit, end_logit, probability, offsets}]),
    where probability is the softmax of the scores over the n-best list.
    """
    example_ids = features["example_id"][:]
    offsets_per_window = features["offset_mapping"][:]
    if len(example_ids) != len(start_logits) or len(start_logits) != len(end_logits):
        raise ValueError(
            f"{len(start_logits)} start and {len(end_logits)} end logit rows for {len(example_ids)} windows: pass the "
            "eval features the model predicted on, in the same order."
        )
    windows_of_example = collections.defaultdict(list)
    for w, example_id in enumerate(example_ids):
        windows_of_example[example_id].append(w)

    predictions, nbest = {}, {}
    for example_id, context in zip(examples["id"][:], examples["context"][:]):
        best_by_span: dict[tuple[int, int], dict[str, Any]] = {}
        for w in windows_of_example[example_id]:
            offsets = offsets_per_window[w]
            window_starts, window_ends = np.asarray(start_logits[w]), np.asarray(end_logits[w])
            for start, end in _valid_spans(window_starts, window_ends, offsets, n_best_size, max_answer_length):
                span = (offsets[start][0], offsets[end][1])
                candidate = {"start_logit": float(window_starts[start]), "end_logit": float(window_ends[end])}
                candidate["score"] = candidate["start_logit"] + candidate["end_logit"]
                if span not in best_by_span or candidate["score"] > best_by_span[span]["score"]:
                    best_by_span[span] = candidate | {"offsets": list(span)}
        ranked = sorted(best_by_span.values(), key=lambda c: c["score"], reverse=True)[:n_best_size] or [
            {"start_logit": 0.0, "end_logit": 0.0, "score": 0.0, "offsets": [0, 0]}
        ]  # no valid span: the empty answer
        probabilities = softmax(np.array([c.pop("score") for c in ranked]))
        nbest[example_id] = [
            {"text": context[c["offsets"][0] : c["offsets"][1]], **c, "probability": float(p)}
            for c, p in zip(ranked, probabilities)
        ]
        predictions[example_id] = nbest[example_id][0]["text"]
    return predictions, nbest


def _valid_spans(start_logits, end_logits, offsets, n_best_size: int, max_answer_length: int):
    """(start, end) token pairs among the best starts and ends of one window that can be an answer."""
    length = len(offsets)
    best_starts = np.argsort(start_logits[:length])[::-1][:n_best_size]
    best_ends = np.argsort(end_logits[:length])[::-1][:n_best_size]
    for start in best_starts:
        for end in best_ends:
            # None marks tokens outside the context: the question, special tokens (CLS, SEP) and padding.
            if offsets[start] is None or offsets[end] is None:
                continue
            if end < start or end - start + 1 > max_answer_length:
                continue
            yield int(start), int(end)
