"""KorQuAD 1.0 exact match and F1, as the official KorQuAD 1.0 evaluation script computes them (values 0-100).

Our own implementation of the logic of the official `evaluate-v1.0.py` (LG CNS, 2018). It differs from
SQuAD v1.1 in two ways that matter for Korean:
- normalisation first turns quotes, angle/double-angle brackets and parentheses (' " 《 》 < > 〈 〉 ( ) ‘ ’)
  into spaces, then lower-cases, drops ASCII punctuation and collapses whitespace. There is no article
  removal (Korean has no articles).
- F1 is CHARACTER-level: the normalised answer with its spaces removed is compared as a bag of
  characters, because Korean words carry particles (서울은, 서울에서) that make whole-token F1 too harsh.
  "서울특별시" against "서울" scores F1 57.1 here and 0 with SQuAD's token F1.

Loaded by path, so it works offline:

    metric = evaluate.load("pipelines/metrics/korquad_v1")
    metric.compute(predictions=[{"id", "prediction_text"}, ...],
                   references=[{"id", "answers": {"text": [...], "answer_start": [...]}}, ...])
    -> {"exact_match", "f1", "exact_count", "total"}

`per_example=True` adds "per_example": [{"id", "exact_match", "f1"}] (each 0 or 100 / 0-100), in the
order of `references`.
"""

import string

import evaluate

from pipelines.metrics.extractive_qa import FEATURES, bag_f1, score_questions

_CITATION = """\
@article{lim2019korquad1,
    title = {KorQuAD1.0: Korean QA Dataset for Machine Reading Comprehension},
    author = {Lim, Seungyoung and Kim, Myungji and Lee, Jooyoul},
    journal = {arXiv preprint arXiv:1909.07005},
    year = {2019},
}
"""

_DESCRIPTION = "Exact match and character-level F1 of the official KorQuAD 1.0 evaluation script, in percent."

_INPUTS = """
predictions: list of {"id": str, "prediction_text": str}.
references: list of {"id": str, "answers": {"text": [str, ...], "answer_start": [int, ...]}}.
per_example: if True, also return per-question scores under "per_example".
Returns exact_match and f1 (0-100, averaged over references), exact_count (questions answered exactly)
and total (number of references).
"""

# Symbols the official script replaces by a space before anything else (so "《책》" becomes " 책 ").
_SYMBOLS_TO_SPACE = "'\"《》<>〈〉()‘’"
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text):
    text = "".join(" " if ch in _SYMBOLS_TO_SPACE else ch for ch in text)
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    return " ".join(text.split())


def exact_match_score(prediction, gold):
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction, gold):
    """Harmonic mean of precision and recall over the bags of characters of the normalised answers, spaces removed."""
    return bag_f1(list(normalize_answer(prediction).replace(" ", "")), list(normalize_answer(gold).replace(" ", "")))


class KorquadV1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=FEATURES,
            reference_urls=["https://korquad.github.io/KorQuad%201.0/"],
        )

    def _compute(self, predictions, references, per_example=False):
        return score_questions(predictions, references, exact_match_score, f1_score, per_example)
