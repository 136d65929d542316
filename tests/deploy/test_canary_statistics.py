"""The canary's statistics (deploy/statistics.py), proved by simulation with fixed seeds (a second or two):
the confidence sequence keeps false alarms at alpha however often the decision looks, where a fixed-sample
interval looked at every run does not; a clearly worse canary is caught; AUC and JS divergence have the
values and intervals they should."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deploy.statistics import (
    auc_difference,
    auc_with_variance,
    brier_difference,
    confidence_sequence,
    js_divergence,
    pair_by_time,
    spent_alpha,
)

ALPHA = 0.05
ROLLOUTS = 400  # simulated canaries of a model exactly as good as the champion
PAIRS = 1500  # labelled pairs each one gathers
LOOK_EVERY = 25  # the decision runs after every 25 new pairs: 60 looks


def _model(generator: np.random.Generator, size: int, noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of a fair classifier (AUC about 0.95, Brier about 0.1) and the labels; `noise` makes it worse."""
    labels = (generator.random(size) < 0.4).astype(float)
    logits = np.where(labels == 1, 1.5, -1.5) + generator.normal(0, 1.3, size) + generator.normal(0, noise, size)
    return 1 / (1 + np.exp(-logits)), labels


def _brier_differences(generator: np.random.Generator, pairs: int, noise: float = 0.0) -> np.ndarray:
    canary, canary_labels = _model(generator, pairs, noise)
    champion, champion_labels = _model(generator, pairs)
    return (canary - canary_labels) ** 2 - (champion - champion_labels) ** 2


def test_repeated_looks_keep_the_false_alarm_rate_at_alpha_where_a_fixed_sample_interval_does_not():
    generator = np.random.default_rng(7)
    sequence_alarms = naive_alarms = 0
    for _ in range(ROLLOUTS):
        differences = _brier_differences(generator, PAIRS)  # true mean difference: 0
        # The running intersection excludes 0 exactly when some look's interval did.
        estimate = confidence_sequence(differences, ALPHA, -1.0, 1.0)
        sequence_alarms += not estimate.lower <= 0.0 <= estimate.upper
        looks = np.arange(LOOK_EVERY, PAIRS + 1, LOOK_EVERY)
        sums, squares = np.cumsum(differences)[looks - 1], np.cumsum(differences ** 2)[looks - 1]
        means = sums / looks
        errors = np.sqrt((squares / looks - means ** 2) / looks)
        naive_alarms += bool(np.any(np.abs(means) > 1.96 * errors))
    assert sequence_alarms / ROLLOUTS <= ALPHA
    # The same data, a 95% interval at each of the 60 looks: the alarm rate is several times alpha.
    assert naive_alarms / ROLLOUTS > 3 * ALPHA


def test_the_sequence_covers_at_every_size_and_narrows_with_evidence():
    generator = np.random.default_rng(11)
    differences = _brier_differences(generator, 4000)
    widths = [confidence_sequence(differences[:size], ALPHA, -1, 1) for size in (100, 1000, 4000)]
    assert widths[0].upper - widths[0].lower > widths[1].upper - widths[1].lower > widths[2].upper - widths[2].lower
    assert widths[2].upper - widths[2].lower < 0.05
    assert confidence_sequence(np.array([]), ALPHA, -1, 1).samples == 0


def test_a_clearly_worse_canary_is_flagged_within_a_few_hundred_pairs():
    generator = np.random.default_rng(3)
    flagged_at = []
    for _ in range(20):
        differences = _brier_differences(generator, 600, noise=3.0)  # its Brier about 0.15 worse
        sizes = [size for size in range(50, 601, 50)
                 if confidence_sequence(differences[:size], ALPHA, -1, 1).lower > 0.02]
        flagged_at.append(sizes[0] if sizes else math.inf)
    assert max(flagged_at) <= 400


def test_pairs_are_close_in_time_and_never_reuse_a_champion_request():
    canary_times = np.array([1.0, 1.0, 5.0, 9.0, 20.0])
    champion_times = np.array([0.5, 1.0, 2.0, 3.0, 6.0, 10.0])
    canary, champion = pair_by_time(canary_times, champion_times)
    assert list(canary) == [0, 1, 2, 3] and list(champion) == [1, 2, 4, 5]  # the one at 20 s finds no partner
    assert all(champion_times[c] >= canary_times[k] for k, c in zip(canary, champion, strict=True))
    assert len(pair_by_time(np.array([]), champion_times)[0]) == 0


def test_the_brier_difference_is_canary_minus_champion_on_the_pairs():
    times = np.arange(4, dtype=float)
    canary = (times, np.array([0.9, 0.1, 0.8, 0.2]), np.array([1.0, 0.0, 1.0, 0.0]))  # Brier 0.025
    champion = (times, np.array([0.5, 0.5, 0.5, 0.5]), np.array([1.0, 0.0, 1.0, 0.0]))  # Brier 0.25
    estimate = brier_difference(canary, champion, ALPHA)
    assert estimate.value == pytest.approx(0.025 - 0.25) and estimate.samples == 4
    assert estimate.lower <= estimate.value <= estimate.upper


def test_auc_and_its_delong_variance():
    generator = np.random.default_rng(5)
    probabilities, labels = _model(generator, 400)
    auc, variance = auc_with_variance(probabilities, labels)
    positives, negatives = probabilities[labels == 1], probabilities[labels == 0]
    brute = np.mean((positives[:, None] > negatives[None, :]) + 0.5 * (positives[:, None] == negatives[None, :]))
    assert auc == pytest.approx(brute)
    # Over repeated samples, DeLong's variance matches the spread of the AUC.
    aucs = [auc_with_variance(*_model(generator, 400))[0] for _ in range(300)]
    assert math.sqrt(variance) == pytest.approx(np.std(aucs), rel=0.25)
    tied = auc_with_variance(np.array([0.5, 0.5, 0.5, 0.5]), np.array([1.0, 0.0, 1.0, 0.0]))
    assert tied[0] == 0.5


def test_auc_intervals_spent_over_looks_keep_false_alarms_under_alpha():
    generator = np.random.default_rng(13)
    alarms = 0
    for _ in range(300):  # from about 100 positives at the first look (Thresholds.min_positives)
        canary, champion = _model(generator, 2000), _model(generator, 8000)
        for look in range(1, 9):
            size = 250 * look
            estimate = auc_difference((canary[0][:size], canary[1][:size]),
                                      (champion[0][:4 * size], champion[1][:4 * size]), spent_alpha(ALPHA, look))
            if not estimate.lower <= 0.0 <= estimate.upper:
                alarms += 1
                break
    assert alarms / 300 <= ALPHA
    assert sum(spent_alpha(ALPHA, look) for look in range(1, 100_000)) <= ALPHA


def test_js_divergence_of_histograms_with_a_bootstrap_interval():
    same = [5, 10, 30, 40, 15]
    assert js_divergence(same, same, ALPHA).value == 0.0
    apart = js_divergence([100, 0, 0], [0, 0, 100], ALPHA)
    assert apart.value == pytest.approx(1.0) and apart.lower > 0.9
    generator = np.random.default_rng(17)
    # Small samples of one distribution: the estimate is above 0 (plug-in bias), the interval reaches 0.
    bins = np.linspace(0, 1, 21)
    for _ in range(50):
        canary = np.histogram(_model(generator, 100)[0], bins)[0]
        champion = np.histogram(_model(generator, 900)[0], bins)[0]
        estimate = js_divergence(canary, champion, spent_alpha(ALPHA, 1))
        assert estimate.value > 0 and estimate.lower < 0.1
    # A canary whose answers are squeezed towards 0.5: its distribution is clearly another one.
    squeezed = np.histogram(0.5 + (_model(generator, 300)[0] - 0.5) / 4, bins)[0]
    assert js_divergence(squeezed, np.histogram(_model(generator, 900)[0], bins)[0], ALPHA).lower > 0.1
