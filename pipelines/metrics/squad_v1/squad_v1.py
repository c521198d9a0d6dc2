"""SQuAD v1.1 exact match and F1, as the official evaluation script computes them (values 0-100).

Our own implementation of the logic of the official `evaluate-v1.1.py` (Rajpurkar et al. 2016):
an answer is normalised (lower case, punctuation removed, the articles a/an/the removed, whitespace
collapsed), EM compares the normalised strings, F1 compares their bags of whitespace tokens, and a
question scores the best value over its gold answers. A question without a prediction scores 0.

Loaded by path, so it works offline:

    metric = evaluate.load("pipelines/metrics/squad_v1")
    metric.compute(
        predictions=[{"id": "q1", "prediction_text": "Denver Broncos"}],
        references=[{"id": "q1", "answers": {"text": ["Denver Broncos"], "answer_start": [177]}}],
    )
    -> {"exact_match": 100.0, "f1": 100.0, "exact_count": 1, "total": 1}

`per_example=True` adds "per_example": [{"id", "exact_match", "f1"}] (each 0 or 100 / 0-100), in the
order of `references`; the mean of each column equals the aggregate value.
"""

import re
import string

import evaluate

from pipelines.metrics.extractive_qa import FEATURES, bag_f1, score_questions

_CITATION = """\
@inproceedings{rajpurkar-etal-2016-squad,
    title = "{SQ}u{AD}: 100,000+ Questions for Machine Comprehension of Text",
    author = "Rajpurkar, Pranav and Zhang, Jian and Lopyrev, Konstantin and Liang, Percy",
    booktitle = "Proceedings of EMNLP 2016",
    year = "2016",
    pages = "2383--2392",
}
"""

_DESCRIPTION = "Exact match and token F1 of the official SQuAD v1.1 evaluation script, in percent."

_INPUTS = """
predictions: list of {"id": str, "prediction_text": str}.
references: list of {"id": str, "answers": {"text": [str, ...], "answer_start": [int, ...]}}.
per_example: if True, also return per-question scores under "per_example".
Returns exact_match and f1 (0-100, averaged over references), exact_count (questions answered exactly)
and total (number of references).
"""

_PUNCTUATION = set(string.punctuation)


def normalize_answer(text):
    """Lower case, drop punctuation, drop the articles a/an/the, collapse whitespace (official order)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match_score(prediction, gold):
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction, gold):
    """Harmonic mean of precision and recall over the bags of normalised whitespace tokens."""
    return bag_f1(normalize_answer(prediction).split(), normalize_answer(gold).split())


class SquadV1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=FEATURES,
            reference_urls=["https://rajpurkar.github.io/SQuAD-explorer/"],
        )

    def _compute(self, predictions, references, per_example=False):
        return score_questions(predictions, references, exact_match_score, f1_score, per_example)
