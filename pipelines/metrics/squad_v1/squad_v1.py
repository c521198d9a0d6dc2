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

import collections
import re
import string

import datasets
import evaluate

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
    prediction_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(gold_tokens)
    num_same = sum(common.values())
    # The official script scores 0 when nothing is shared, which includes two empty answers.
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


class SquadV1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features(
                {
                    "predictions": {"id": datasets.Value("string"), "prediction_text": datasets.Value("string")},
                    "references": {
                        "id": datasets.Value("string"),
                        "answers": {
                            "text": datasets.List(datasets.Value("string")),
                            "answer_start": datasets.List(datasets.Value("int32")),
                        },
                    },
                }
            ),
            reference_urls=["https://rajpurkar.github.io/SQuAD-explorer/"],
        )

    def _compute(self, predictions, references, per_example=False):
        predicted_text = {p["id"]: p["prediction_text"] for p in predictions}
        scores = []
        for reference in references:
            golds = reference["answers"]["text"]
            prediction = predicted_text.get(reference["id"])
            if prediction is None:  # unanswered: 0, as in the official script
                exact, f1 = 0.0, 0.0
            else:
                exact = max(exact_match_score(prediction, gold) for gold in golds)
                f1 = max(f1_score(prediction, gold) for gold in golds)
            scores.append({"id": reference["id"], "exact_match": 100.0 * exact, "f1": 100.0 * f1})
        total = len(scores)
        result = {
            "exact_match": sum(s["exact_match"] for s in scores) / total if total else 0.0,
            "f1": sum(s["f1"] for s in scores) / total if total else 0.0,
            "exact_count": sum(1 for s in scores if s["exact_match"] == 100.0),
            "total": total,
        }
        if per_example:
            result["per_example"] = scores
        return result
