"""Inference with finished runs: transformers' text-classification pipeline, and an extractive-QA pipeline
registered under "extractive-question-answering" on import.

    nli = classification_pipeline("outputs/mnli/minilm_cpu", ("premise", "hypothesis"))
    nli({"premise": "A man plays a guitar.", "hypothesis": "A man makes music."})
    # {'label': 'entailment', 'score': 0.91, 'scores': {'entailment': 0.91, 'neutral': 0.06, 'contradiction': 0.03}}
    # (the same as pipeline("text-classification", ...)({"text": premise, "text_pair": hypothesis}, top_k=None))

    qa = question_answering_pipeline("outputs/qa/minilm_squad")
    qa({"question": "Where is the tower?", "context": "The Eiffel Tower is in Paris."})
    # {'answer': 'Paris', 'score': 0.87, 'start': 23, 'end': 28}

Why our own QA pipeline: transformers 5.3 removed the extractive "question-answering" pipeline (and
`pipeline("question-answering")` now raises). `ExtractiveQAPipeline` puts it back for any
`AutoModelForQuestionAnswering` model, ours included, using the same windowing and span selection as our QA
evaluation (`pipelines.qa_windows`), so a prediction here is the answer evaluation would have scored.

Both take one input (a dict) or a list of them, and `batch_size=` for batched inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForQuestionAnswering, pipeline
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.base import ChunkPipeline

# Registers ScratchTransformer with the Auto classes, so run folders load without remote code.
import pipelines.models  # noqa: F401
from pipelines.qa_windows import postprocess_qa_predictions, prepare_eval_features

QA_TASK = "extractive-question-answering"


def longest_input(model, tokenizer, wanted: int | None = None) -> int:
    """The longest token sequence both the model's position table and the tokenizer allow (and `wanted`, if given)."""
    limits = [getattr(model.config, "max_position_embeddings", None), tokenizer.model_max_length, wanted]
    # Tokenizers without a limit report a huge sentinel number (int(1e30)).
    return min(limit for limit in limits if limit is not None and limit < 1_000_000)


def check_fields(example, fields: tuple[str, ...]) -> None:
    if not isinstance(example, dict):
        raise ValueError(f"Expected a dict with {', '.join(fields)}, got {type(example).__name__}: {example!r:.100}")
    for name in fields:
        value = example.get(name)
        if not isinstance(value, str) or not value.strip():
            problem = (
                "is missing"
                if name not in example
                else "is empty"
                if isinstance(value, str)
                else f"is {type(value).__name__}, not text"
            )
            raise ValueError(f"Field '{name}' {problem}")


# --- Extractive QA --------------------------------------------------------------------------------------------


@dataclass
class WindowSettings:
    """How a question and a long context are cut into windows: the fields `pipelines.tasks.qa` reads from its data
    arguments. The defaults are BERT's SQuAD settings, shrunk for models with fewer positions."""

    max_seq_length: int = 384
    doc_stride: int = 128
    max_query_length: int = 64
    pad_to_max_length: bool = False

    @classmethod
    def for_model(cls, model, tokenizer, **recipe) -> "WindowSettings":
        """Settings from a run's recipe (max_seq_length, doc_stride, max_query_length), fitted to the model."""
        max_seq_length = longest_input(model, tokenizer, recipe.get("max_seq_length") or cls.max_seq_length)
        max_query_length = min(recipe.get("max_query_length") or cls.max_query_length, max_seq_length // 4)
        room_for_context = max_seq_length - max_query_length - 3  # [CLS] question [SEP] context [SEP]
        doc_stride = min(recipe.get("doc_stride") or cls.doc_stride, room_for_context // 2)
        return cls(max_seq_length=max_seq_length, doc_stride=doc_stride, max_query_length=max_query_length)


class ExtractiveQAPipeline(ChunkPipeline):
    """Question + context -> {"answer", "score", "start", "end"} (character offsets into the context).

    A context longer than one window is cut into overlapping windows (a "chunk" each, batched together); the
    answer is the best span over all windows. `score` is the softmax probability of that span among the n-best
    candidates. Options: `max_answer_length` (tokens, default 30), `n_best_size` (20), `window` (WindowSettings).
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True

    def _sanitize_parameters(
        self,
        window: WindowSettings | None = None,
        max_answer_length: int | None = None,
        n_best_size: int | None = None,
        **kwargs,
    ):
        preprocess = {"window": window} if window is not None else {}
        postprocess = {
            k: v for k, v in (("max_answer_length", max_answer_length), ("n_best_size", n_best_size)) if v is not None
        }
        return preprocess, {}, postprocess

    def preprocess(self, example, window: WindowSettings | None = None):
        check_fields(example, ("question", "context"))
        window = window or WindowSettings.for_model(self.model, self.tokenizer)
        one = {"id": ["0"], "question": [example["question"]], "context": [example["context"]]}
        windows = prepare_eval_features(one, self.tokenizer, window)
        count = len(windows["input_ids"])
        for w in range(count):
            model_inputs = {
                name: torch.tensor([windows[name][w]]) for name in self.tokenizer.model_input_names if name in windows
            }
            # Non-tensor entries pass through the batching untouched, one per window.
            yield {
                **model_inputs,
                "offset_mapping": windows["offset_mapping"][w],
                "context": example["context"],
                "is_last": w == count - 1,
            }

    def _forward(self, inputs):
        passthrough = {name: inputs.pop(name) for name in ("offset_mapping", "context", "is_last")}
        outputs = self.model(**inputs)
        return {"start_logits": outputs.start_logits, "end_logits": outputs.end_logits, **passthrough}

    def postprocess(self, window_outputs, max_answer_length: int = 30, n_best_size: int = 20):
        windows = {
            "example_id": ["0"] * len(window_outputs),
            "offset_mapping": [w["offset_mapping"] for w in window_outputs],
        }
        context = window_outputs[0]["context"]
        _, nbest = postprocess_qa_predictions(
            {"id": ["0"], "context": [context]},
            windows,
            [w["start_logits"][0].float().numpy() for w in window_outputs],
            [w["end_logits"][0].float().numpy() for w in window_outputs],
            n_best_size=n_best_size,
            max_answer_length=max_answer_length,
        )
        best = nbest["0"][0]
        start, end = best["offsets"]
        return {"answer": best["text"], "score": best["probability"], "start": start, "end": end}


# --- Registration and loading ---------------------------------------------------------------------------------

PIPELINE_REGISTRY.register_pipeline(
    QA_TASK, pipeline_class=ExtractiveQAPipeline, pt_model=AutoModelForQuestionAnswering, type="text"
)


def classification_pipeline(
    model,
    fields: tuple[str, ...],
    regression: bool = False,
    tokenizer=None,
    device=None,
    trust_remote_code: bool = False,
    **kwargs,
):
    """transformers' `text-classification` pipeline (text pairs as text/text_pair), fed examples with the task's own
    field names (one dict, or an iterable of them); yields {label, score, scores: {label: probability} in label-id
    order} per example, or {score} for regression. Inputs longer than the model reads are truncated (pairs: the
    longer text first, as in training)."""
    classifier = pipeline(
        "text-classification",
        model=_str(model),
        tokenizer=_str(tokenizer),
        device=device,
        trust_remote_code=trust_remote_code,
        top_k=None,
        function_to_apply="none" if regression else "softmax",
        **kwargs,
    )

    def as_text(example):
        check_fields(example, fields)
        return {"text": example[fields[0]], "text_pair": example[fields[1]]} if len(fields) == 2 else example[fields[0]]

    def classify(examples, **options):
        single = isinstance(examples, dict)
        texts = as_text(examples) if single else (as_text(example) for example in examples)
        max_length = longest_input(classifier.model, classifier.tokenizer)
        outputs = classifier(texts, truncation=True, max_length=max_length, **options)
        order = list(classifier.model.config.id2label.values())
        results = (_label_scores(scores, regression, order) for scores in ([outputs] if single else outputs))
        return next(results) if single else results

    return classify


def _label_scores(scores: list[dict], regression: bool, order: list[str]) -> dict:
    if regression:
        return {"score": float(scores[0]["score"])}
    by_label = {s["label"]: float(s["score"]) for s in scores}
    return {
        "label": scores[0]["label"],
        "score": float(scores[0]["score"]),
        "scores": {label: by_label[label] for label in order if label in by_label},
    }


def question_answering_pipeline(
    model, tokenizer=None, device=None, trust_remote_code: bool = False, **kwargs
) -> ExtractiveQAPipeline:
    """The extractive QA pipeline for a run folder or a loaded model and tokenizer.

    Pass `window=WindowSettings(...)` to choose the windows; by default they follow BERT's SQuAD settings, fitted
    to the model's positions.
    """
    return pipeline(
        QA_TASK,
        model=_str(model),
        tokenizer=_str(tokenizer),
        device=device,
        trust_remote_code=trust_remote_code,
        **kwargs,
    )


def _str(value):
    return str(value) if isinstance(value, Path) else value
