"""Drift metrics of one feature, baseline against current, as Vertex Model Monitoring v2 defines them.

- Numeric features: Jensen-Shannon divergence (base 2, so 0 to 1) between the two
  histograms over the baseline's deciles, with one bucket below, one above and one for
  missing values, so a shift outside the baseline's range or into missing values counts.
- Categorical features: L-infinity distance, the largest difference in any one value's
  share (missing values are a value of their own).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from monitoring.config import MonitoredFeature

NUMERIC_BINS = 10
MISSING = "(missing)"


@dataclasses.dataclass(frozen=True)
class FeatureDrift:
    name: str
    kind: str
    metric: str
    value: float | None  # None: the feature is not in the current data
    threshold: float
    labels: tuple[str, ...]  # the histogram's buckets
    baseline: tuple[float, ...]  # share per bucket
    current: tuple[float, ...]
    note: str = ""

    @property
    def drifted(self) -> bool:
        return self.value is not None and self.value > self.threshold


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence of two distributions over the same buckets, base 2: 0 (equal) to 1."""
    middle = (p + q) / 2

    def kullback_leibler(a: np.ndarray) -> float:
        present = a > 0
        return float(np.sum(a[present] * np.log2(a[present] / middle[present])))

    return max(0.0, (kullback_leibler(p) + kullback_leibler(q)) / 2)


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else counts.astype(float)


def numeric_histograms(baseline: pd.Series, current: pd.Series) -> tuple[list[str], np.ndarray, np.ndarray]:
    base = pd.to_numeric(baseline, errors="coerce").to_numpy(dtype=float)
    now = pd.to_numeric(current, errors="coerce").to_numpy(dtype=float)
    present = base[~np.isnan(base)]
    edges = np.unique(np.quantile(present, np.linspace(0, 1, NUMERIC_BINS + 1))[1:-1]) if present.size else np.array([])

    def counts(values: np.ndarray) -> np.ndarray:
        missing = np.isnan(values)
        buckets = np.bincount(np.searchsorted(edges, values[~missing], side="right"), minlength=len(edges) + 1)
        return np.append(buckets, missing.sum()).astype(float)

    bounds = [f"{edge:.4g}" for edge in edges]
    labels = ([f"< {bounds[0]}"] + [f"{low}..{high}" for low, high in zip(bounds, bounds[1:], strict=False)]
              + [f">= {bounds[-1]}"] if bounds else ["all"]) + [MISSING]
    return labels, _shares(counts(base)), _shares(counts(now))


def category_text(values: pd.Series) -> pd.Series:
    """Values as category names: a whole number is one name whether it arrived as 8, 8.0 or "8"
    (parquet gives floats where a column has gaps, JSON requests give ints)."""
    numbers = pd.to_numeric(values, errors="coerce")
    text = values.astype("string")
    whole = numbers.notna() & (numbers == np.floor(numbers)) & numbers.abs().lt(2**53)
    text[whole] = numbers[whole].astype("int64").astype("string")
    return text.fillna(MISSING).replace("", MISSING)


def categorical_histograms(baseline: pd.Series, current: pd.Series) -> tuple[list[str], np.ndarray, np.ndarray]:
    def shares(values: pd.Series) -> pd.Series:
        return category_text(values).value_counts(normalize=True)

    base, now = shares(baseline), shares(current)
    labels = list(base.index.union(now.index, sort=False))
    labels.sort(key=lambda label: (-base.get(label, 0.0), label))
    return ([str(label) for label in labels], base.reindex(labels, fill_value=0.0).to_numpy(dtype=float),
            now.reindex(labels, fill_value=0.0).to_numpy(dtype=float))


def feature_drift(feature: MonitoredFeature, baseline: pd.DataFrame, current: pd.DataFrame) -> FeatureDrift:
    """The feature's metric; a feature absent from the current data is reported as such, with no value."""
    if feature.name not in current.columns:
        return FeatureDrift(feature.name, feature.kind, feature.metric, None, feature.threshold, (), (), (),
                            "not in the current data: not compared")
    if feature.name not in baseline.columns:
        return FeatureDrift(feature.name, feature.kind, feature.metric, None, feature.threshold, (), (), (),
                            "not in the baseline: not compared")
    if feature.kind == "numeric":
        labels, base, now = numeric_histograms(baseline[feature.name], current[feature.name])
        value = jensen_shannon(base, now)
    else:
        labels, base, now = categorical_histograms(baseline[feature.name], current[feature.name])
        value = float(np.max(np.abs(base - now))) if len(labels) else 0.0
    return FeatureDrift(feature.name, feature.kind, feature.metric, round(value, 6), feature.threshold,
                        tuple(labels), tuple(base.tolist()), tuple(now.tolist()))
