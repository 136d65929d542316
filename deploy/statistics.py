"""The canary's statistics: each estimate with an interval that stays honest when the decision looks again.

A canary decision runs every `interval` and looks at all the evidence gathered since the canary went
live. A fixed-sample test repeated at every look raises false alarms far above its nominal level (the
simulation in tests/deploy/test_canary_statistics.py shows it), so:

- **Labelled quality** (`brier_difference`): the per-request difference in Brier score, canary minus
  champion, on pairs of labelled requests close in time (each canary request with the next champion
  request not yet paired: the traffic split is random per request, so within a pair both models face
  the same population, and a drift in the label's base rate cancels). The interval is a confidence
  *sequence*: the predictable plug-in empirical-Bernstein sequence of Waudby-Smith & Ramdas,
  "Estimating means of bounded random variables by betting", JRSS-B 86(1), 2024, Theorem 2
  (arXiv:2010.09686), for the mean of values in a known range. It covers the true mean at every
  sample size at once with probability 1 - alpha, so any number of looks, and stopping at any of
  them, keeps the false-alarm rate at alpha; the running intersection is as valid and never wider.
- **AUC** (`auc_difference`): each model's AUC on its own labelled requests with DeLong's variance
  (DeLong, DeLong & Clarke-Pearson, Biometrics 44, 1988), the difference's normal interval; judged only
  with about a hundred labelled requests of each class per model, where the normal approximation holds.
  The level is spent over the looks: look k uses alpha * 6 / (pi^2 k^2), whose sum over every k is alpha
  (a union bound: valid for any number of looks).
- **Prediction-distribution parity** (`js_divergence`): the Jensen-Shannon divergence (base 2, in
  [0, 1]) of the two predicted-probability histograms, with a bootstrap interval (each histogram redrawn
  from its own counts, fixed seed) at the same spent level, conservative on both sides.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

BOOTSTRAP_DRAWS = 400
BOOTSTRAP_SEED = 20  # a decision is reproducible: the same evidence gives the same interval


@dataclasses.dataclass(frozen=True)
class Estimate:
    value: float
    lower: float
    upper: float
    samples: int  # what the estimate rests on: pairs, labelled requests, predictions


def spent_alpha(alpha: float, look: int) -> float:
    """The level of look `look` (1, 2, ...) so that all looks together spend at most `alpha`."""
    return alpha * 6.0 / (math.pi ** 2 * max(1, look) ** 2)


def confidence_sequence(values: np.ndarray, alpha: float, low: float = 0.0, high: float = 1.0) -> Estimate:
    """The mean of `values` (each in [low, high], in arrival order) with its time-uniform interval at the
    last value: predictable plug-in empirical Bernstein (Waudby-Smith & Ramdas 2024, Theorem 2), the
    running intersection over every earlier size. `value` is the plain mean."""
    if not len(values):
        return Estimate(math.nan, low, high, 0)
    span = high - low
    x = np.clip((np.asarray(values, dtype=float) - low) / span, 0.0, 1.0)
    t = np.arange(1, len(x) + 1, dtype=float)
    log_term = math.log(2.0 / alpha)
    # mu_hat_t and sigma2_hat_t with their priors (1/2 and 1/4), and each one's value before x_t arrived.
    mean_hat = (0.5 + np.cumsum(x)) / (t + 1)
    variance_hat = (0.25 + np.cumsum((x - mean_hat) ** 2)) / (t + 1)
    mean_before = np.concatenate(([0.5], mean_hat[:-1]))
    variance_before = np.concatenate(([0.25], variance_hat[:-1]))
    bets = np.minimum(np.sqrt(2.0 * log_term / (variance_before * t * np.log1p(t))), 0.5)
    psi = (-np.log1p(-bets) - bets) / 4.0
    weight = np.cumsum(bets)
    centre = np.cumsum(bets * x) / weight
    radius = (log_term + np.cumsum(4.0 * (x - mean_before) ** 2 * psi)) / weight
    lower = float(np.max(np.maximum(centre - radius, 0.0)))
    upper = float(np.min(np.minimum(centre + radius, 1.0)))
    lower, upper = min(lower, upper), max(lower, upper)  # an empty intersection cannot happen at level 1-alpha
    return Estimate(low + span * float(x.mean()), low + span * lower, low + span * upper, len(x))


def pair_by_time(canary_times: np.ndarray, champion_times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (canary, champion) of pairs: each canary request (in time order) with the first champion
    request at or after it that no earlier pair took. Pairing looks at times only, never at outcomes."""
    canary_times, champion_times = np.asarray(canary_times), np.asarray(champion_times)
    if not len(canary_times) or not len(champion_times):
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    first_after = np.searchsorted(champion_times, canary_times, side="left")
    order = np.arange(len(canary_times))
    # Strictly increasing champion indices: index_k >= index_{k-1} + 1.
    champion = np.maximum.accumulate(first_after - order) + order
    kept = champion < len(champion_times)
    return order[kept], champion[kept]


def brier_difference(canary: tuple[np.ndarray, np.ndarray, np.ndarray],
                     champion: tuple[np.ndarray, np.ndarray, np.ndarray], alpha: float) -> Estimate:
    """Mean Brier score of the canary minus the champion's, on time-paired labelled requests, with its
    confidence sequence. Each argument: (times, probabilities, labels), sorted by time."""
    canary_index, champion_index = pair_by_time(canary[0], champion[0])
    canary_brier = (canary[1][canary_index] - canary[2][canary_index]) ** 2
    champion_brier = (champion[1][champion_index] - champion[2][champion_index]) ** 2
    return confidence_sequence(canary_brier - champion_brier, alpha, -1.0, 1.0)


def brier_score(probabilities: np.ndarray, labels: np.ndarray) -> float | None:
    return float(np.mean((probabilities - labels) ** 2)) if len(labels) else None


def log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float | None:
    if not len(labels):
        return None
    clipped = np.clip(probabilities, 1e-7, 1 - 1e-7)
    return float(-np.mean(labels * np.log(clipped) + (1 - labels) * np.log1p(-clipped)))


def _midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + ends + 1) / 2.0)[inverse]


def auc_with_variance(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """AUC (Mann-Whitney, ties counted half) and DeLong's variance of it."""
    positives, negatives = probabilities[labels == 1], probabilities[labels == 0]
    m, n = len(positives), len(negatives)
    overall = _midranks(np.concatenate((positives, negatives)))
    positive_placements = (overall[:m] - _midranks(positives)) / n  # share of negatives below each positive
    negative_placements = 1.0 - (overall[m:] - _midranks(negatives)) / m  # share of positives above each negative
    auc = float(positive_placements.mean())
    variance = float(positive_placements.var(ddof=1) / m + negative_placements.var(ddof=1) / n)
    return auc, variance


def auc_difference(canary: tuple[np.ndarray, np.ndarray], champion: tuple[np.ndarray, np.ndarray],
                   alpha: float) -> Estimate:
    """AUC of the canary minus the champion's (independent requests), with the normal interval of DeLong's
    variances at level alpha. Each argument: (probabilities, labels); the normal approximation wants about a
    hundred of each class per model (Thresholds.min_positives), fewer and it covers too little near AUC 1."""
    canary_auc, canary_variance = auc_with_variance(*canary)
    champion_auc, champion_variance = auc_with_variance(*champion)
    difference = canary_auc - champion_auc
    radius = NormalDist().inv_cdf(1 - alpha / 2) * math.sqrt(canary_variance + champion_variance)
    return Estimate(difference, difference - radius, difference + radius, len(canary[1]))


def _js(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """JS divergence (base 2) of rows of two arrays of distributions."""
    middle = (first + second) / 2.0

    def kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(p > 0, p * np.log2(p / q), 0.0)
        return terms.sum(axis=-1)

    return np.clip((kl(first, middle) + kl(second, middle)) / 2.0, 0.0, 1.0)


def js_divergence(canary_counts: Sequence[int], champion_counts: Sequence[int], alpha: float) -> Estimate:
    """JS divergence of two histograms over the same bins, with a bootstrap interval at level alpha."""
    canary, champion = np.asarray(canary_counts, dtype=float), np.asarray(champion_counts, dtype=float)
    canary_total, champion_total = int(canary.sum()), int(champion.sum())
    value = float(_js(canary / canary_total, champion / champion_total))
    generator = np.random.default_rng(BOOTSTRAP_SEED)
    canary_draws = generator.multinomial(canary_total, canary / canary_total, BOOTSTRAP_DRAWS) / canary_total
    champion_draws = generator.multinomial(champion_total, champion / champion_total, BOOTSTRAP_DRAWS) / champion_total
    # The plug-in divergence of small samples is biased upward, and its bootstrap draws more so. Conservative on
    # both sides: the lower bound is the basic (reverse-percentile) one, which takes that bias out; the upper
    # bound the percentile one, which keeps it.
    high = float(np.quantile(_js(canary_draws, champion_draws), 1 - alpha / 2))
    return Estimate(value, max(0.0, 2 * value - high), high, canary_total)
