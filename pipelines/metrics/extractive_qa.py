"""What the SQuAD v1.1 and KorQuAD 1.0 metric modules share: their input features, the bag-overlap F1, and the
scoring of every question against its gold answers (best over the golds; unanswered scores 0, as the official
scripts do). Each metric module keeps its own normalisation and its own units for F1 (words or characters).
"""

import collections

import datasets

FEATURES = datasets.Features(
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
)


def bag_f1(prediction_items: list, gold_items: list) -> float:
    """Harmonic mean of precision and recall over two bags (of tokens or characters); 0 when nothing is shared,
    which includes two empty answers (as in the official scripts)."""
    common = collections.Counter(prediction_items) & collections.Counter(gold_items)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_items)
    recall = num_same / len(gold_items)
    return 2 * precision * recall / (precision + recall)


def score_questions(predictions, references, exact_match_score, f1_score, per_example: bool = False) -> dict:
    """exact_match and f1 (0-100, averaged over references), exact_count, total, and per question if asked."""
    predicted_text = {p["id"]: p["prediction_text"] for p in predictions}
    scores = []
    for reference in references:
        golds = reference["answers"]["text"]
        prediction = predicted_text.get(reference["id"])
        if prediction is None:  # unanswered: 0, as in the official scripts
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
