"""NLI classification metric: accuracy, macro-F1 and the confusion matrix, as an `evaluate` module.

It ships with the project so that it loads offline: evaluate.load("<path to this folder>").
(One import per line: evaluate's dependency scanner misreads `import a, b`.)
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """Accuracy, macro-averaged F1 and confusion matrix (rows: gold, columns: predicted) for
classification with a fixed label set (MNLI: 0 entailment, 1 neutral, 2 contradiction)."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted label ids.
    references: gold label ids.
    num_labels: size of the label set (default: 1 + the largest id seen).
Returns:
    accuracy: fraction correct, 0-1.
    macro_f1: unweighted mean of the per-label F1, 0-1 (a label never predicted nor gold counts as 0).
    confusion_matrix: list of rows, confusion_matrix[gold][predicted] = count.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Nli(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, num_labels=None):
        predictions = np.asarray(predictions, dtype=np.int64)
        references = np.asarray(references, dtype=np.int64)
        if num_labels is None:
            num_labels = int(max(predictions.max(initial=0), references.max(initial=0))) + 1
        confusion = np.zeros((num_labels, num_labels), dtype=np.int64)
        np.add.at(confusion, (references, predictions), 1)
        true_positives = np.diag(confusion).astype(float)
        predicted = confusion.sum(axis=0)
        gold = confusion.sum(axis=1)
        # F1 = 2TP / (predicted + gold); 0 where a label is neither predicted nor gold.
        denominator = predicted + gold
        f1 = np.divide(2 * true_positives, denominator, out=np.zeros(num_labels), where=denominator > 0)
        return {
            "accuracy": float(true_positives.sum() / max(len(references), 1)),
            "macro_f1": float(f1.mean()),
            "confusion_matrix": confusion.tolist(),
        }
