"""GLUE's official metrics, as an `evaluate` module that loads offline: evaluate.load("<this folder>", "<task>").

evaluate.load("glue", ...) fetches its script from the Hub (fails offline) and needs scikit-learn; this module
computes the same numbers with numpy and scipy. (One import per line: evaluate's dependency scanner misreads
`import a, b`.)
"""

import datasets
import evaluate
import numpy as np
from scipy import stats

_DESCRIPTION = """GLUE metrics by task: CoLA Matthews correlation; MRPC and QQP accuracy and F1 (of the positive
class, label 1); STS-B Pearson and Spearman correlation; SST-2, MNLI, QNLI, RTE, WNLI accuracy."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted label ids (STS-B: predicted scores).
    references: gold label ids (STS-B: gold scores).
Returns:
    cola: matthews_correlation; mrpc, qqp: accuracy, f1; stsb: pearson, spearmanr; the others: accuracy.
"""

TASKS = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "mnli_matched", "mnli_mismatched", "qnli", "rte", "wnli")


def matthews_correlation(predictions: np.ndarray, references: np.ndarray) -> float:
    """Binary Matthews correlation; 0 when a row or column of the confusion matrix is empty (as scikit-learn)."""
    tp = float(np.sum((predictions == 1) & (references == 1)))
    tn = float(np.sum((predictions == 0) & (references == 0)))
    fp = float(np.sum((predictions == 1) & (references == 0)))
    fn = float(np.sum((predictions == 0) & (references == 1)))
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return float((tp * tn - fp * fn) / denominator) if denominator > 0 else 0.0


def positive_f1(predictions: np.ndarray, references: np.ndarray) -> float:
    """F1 of label 1 (MRPC: equivalent, QQP: duplicate); 0 when it is neither predicted nor gold."""
    true_positives = float(np.sum((predictions == 1) & (references == 1)))
    denominator = float(np.sum(predictions == 1) + np.sum(references == 1))
    return 2 * true_positives / denominator if denominator > 0 else 0.0


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Glue(evaluate.Metric):
    def _info(self):
        if self.config_name not in TASKS:
            raise KeyError(f"Unknown GLUE task '{self.config_name}'; expected one of {', '.join(TASKS)}")
        value = datasets.Value("float64" if self.config_name == "stsb" else "int64")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": value, "references": value}),
        )

    def _compute(self, predictions, references):
        predictions, references = np.asarray(predictions), np.asarray(references)
        if self.config_name == "stsb":
            return {
                "pearson": float(stats.pearsonr(predictions, references)[0]),
                "spearmanr": float(stats.spearmanr(predictions, references)[0]),
            }
        if self.config_name == "cola":
            return {"matthews_correlation": matthews_correlation(predictions, references)}
        accuracy = float(np.mean(predictions == references)) if len(references) else 0.0
        if self.config_name in ("mrpc", "qqp"):
            return {"accuracy": accuracy, "f1": positive_f1(predictions, references)}
        return {"accuracy": accuracy}
