"""The statistics of a comparison report: mean ± std over seeds, a paired bootstrap of the difference between
two models, and McNemar's test on per-example correctness; and the mean with a t-interval over seeds (compute curves).

Why these three:
- Seeds: fine-tuning results move with the seed, so a model's score is the mean over seeds, with the sample
  standard deviation (ddof=1) as its spread.
- Paired bootstrap: both models answer the same evaluation examples, so the uncertainty of their difference
  comes from which examples happened to be in the evaluation set. Resampling examples (the same resample for
  both models) gives a 95% interval for the difference of the means. Seeds are averaged per example first,
  so the interval is about the seed-averaged models.
- McNemar: for one seed of each model, only the examples on which they disagree (one right, the other wrong)
  carry information about which is better; the test asks whether those disagreements split 50/50.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

# Below this many disagreements the chi-square approximation is poor and the exact binomial test is used.
MCNEMAR_EXACT_BELOW = 25


def mean_std(values) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof=1); the std is None for a single value (no spread to estimate)."""
    values = np.asarray(list(values), dtype=np.float64)
    if values.size == 0:
        raise ValueError("mean_std of no values")
    std = float(values.std(ddof=1)) if values.size > 1 else None
    return float(values.mean()), std


@dataclass
class MeanCI:
    mean: float
    low: float | None  # None for a single value: no spread to estimate an interval from
    high: float | None
    n: int
    confidence: float


def mean_ci(values, confidence: float = 0.95) -> MeanCI:
    """Mean and Student's t-interval of the mean over seeds: mean ± t(n-1) x std(ddof=1) / sqrt(n).

    The seeds of one setting are a small sample (2 to 5 runs), so the interval uses the t distribution rather than
    the normal one: with 3 seeds the 95% interval is ±4.3 standard errors, not ±1.96.
    """
    values = list(values)
    mean, std = mean_std(values)
    n = len(values)
    if std is None:
        return MeanCI(mean, None, None, n, confidence)
    half = float(scipy_stats.t.ppf((1 + confidence) / 2, df=n - 1)) * std / math.sqrt(n)
    return MeanCI(mean, mean - half, mean + half, n, confidence)


@dataclass
class McNemarResult:
    baseline_only: int  # examples the baseline gets right and the other model wrong ("b")
    other_only: int  # examples the other model gets right and the baseline wrong ("c")
    statistic: float  # chi-square with continuity correction, (|b - c| - 1)^2 / (b + c)
    p_value: float  # from the method below
    method: str  # "exact" (binomial) or "chi-square"


def mcnemar(baseline_correct, other_correct) -> McNemarResult:
    """McNemar's test on two aligned 0/1 (or bool) correctness vectors.

    With fewer than 25 disagreements the p-value is the exact two-sided binomial test of b successes in b + c
    trials at 1/2; otherwise the chi-square test with continuity correction (1 degree of freedom).
    """
    baseline_correct = np.asarray(baseline_correct, dtype=bool)
    other_correct = np.asarray(other_correct, dtype=bool)
    if baseline_correct.shape != other_correct.shape:
        raise ValueError(f"correctness vectors differ in length: {baseline_correct.shape} vs {other_correct.shape}")
    b = int(np.sum(baseline_correct & ~other_correct))
    c = int(np.sum(~baseline_correct & other_correct))
    disagreements = b + c
    if disagreements == 0:
        return McNemarResult(b, c, 0.0, 1.0, "exact")
    statistic = (abs(b - c) - 1) ** 2 / disagreements if abs(b - c) >= 1 else 0.0
    if disagreements < MCNEMAR_EXACT_BELOW:
        p_value = scipy_stats.binomtest(b, disagreements, 0.5, alternative="two-sided").pvalue
        method = "exact"
    else:
        p_value = scipy_stats.chi2.sf(statistic, df=1)
        method = "chi-square"
    return McNemarResult(b, c, float(statistic), float(min(1.0, p_value)), method)


@dataclass
class BootstrapResult:
    baseline_mean: float
    other_mean: float
    difference: float  # other - baseline, on the examples both were scored on
    ci_low: float
    ci_high: float
    p_value: float  # two-sided: how often the resampled difference lands on the other side of 0, doubled
    n_examples: int
    n_resamples: int
    confidence: float


def paired_bootstrap(
    baseline_scores, other_scores, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> BootstrapResult:
    """Percentile bootstrap interval of mean(other) - mean(baseline), resampling examples jointly.

    Each argument is a list of per-seed score vectors (or one vector, or a 2-D array seeds x examples), aligned
    by example. Seeds are averaged per example first, so the two models may have different numbers of seeds.
    """
    baseline = _seed_average(baseline_scores)
    other = _seed_average(other_scores)
    if baseline.shape != other.shape:
        raise ValueError(f"score vectors differ in length: {baseline.shape} vs {other.shape}")
    n = baseline.size
    if n == 0:
        raise ValueError("paired_bootstrap of no examples")
    differences = other - baseline
    rng = np.random.default_rng(seed)
    resampled = np.empty(n_resamples)
    # Resample in chunks: n_resamples x n indices at once would take gigabytes for a full dev set.
    chunk = max(1, 2_000_000 // n)
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        indices = rng.integers(0, n, size=(stop - start, n))
        resampled[start:stop] = differences[indices].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(resampled, [tail, 1 - tail])
    observed = float(differences.mean())
    # Share of resamples at or beyond 0 on the side opposite to the observed difference (doubled, capped at 1).
    if observed > 0:
        p_value = 2 * np.mean(resampled <= 0)
    elif observed < 0:
        p_value = 2 * np.mean(resampled >= 0)
    else:
        p_value = 1.0
    return BootstrapResult(
        baseline_mean=float(baseline.mean()),
        other_mean=float(other.mean()),
        difference=observed,
        ci_low=float(low),
        ci_high=float(high),
        p_value=float(min(1.0, p_value)),
        n_examples=n,
        n_resamples=n_resamples,
        confidence=confidence,
    )


def _seed_average(scores) -> np.ndarray:
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim == 1:
        return array
    if array.ndim == 2:
        return array.mean(axis=0)
    raise ValueError(f"expected per-seed score vectors (seeds x examples), got shape {array.shape}")


def format_p(p_value: float | None) -> str:
    """p-values as people read them: 3 significant digits, or '< 0.001'."""
    if p_value is None or (isinstance(p_value, float) and math.isnan(p_value)):
        return "—"
    return "< 0.001" if p_value < 0.001 else f"{p_value:.3g}"
