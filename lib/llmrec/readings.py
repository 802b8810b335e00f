"""The words the notebooks write from a run's numbers.

Every comparative word a notebook prints ("better", "worse", "cannot tell", "above chance",
"in every seed") is chosen here, by an interval or by every seed, never by two points: the same
numbers always give the same verdict, and tests/test_readings.py feeds each rule numbers on both
sides of its threshold.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["auc_against_chance", "direction", "interval", "metrics_line", "paired", "seeds_compare", "share", "signed_number"]


def direction(low: float, high: float, threshold: float = 0.0) -> str:
    """"below", "above" or "holds": where the interval [low, high] lies against `threshold`
    ("nan" when there is no interval)."""
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return "nan"
    if low > high:
        raise ValueError(f"an interval's low end ({low}) is above its high end ({high})")
    return "below" if high < threshold else "above" if low > threshold else "holds"


def signed_number(x: float) -> str:
    """A signed number with a true minus sign, as README's tables and the readings write it."""
    return f"{x:+.3f}".replace("-", "−")


def interval(low: float, high: float, signed: bool = True) -> str:
    """An interval as the notebooks print it: "−0.151 … −0.071" (signed) or "0.941–1.057"."""
    return f"{signed_number(low)} … {signed_number(high)}" if signed else f"{low:.3f}–{high:.3f}"


def paired(low: float, high: float, opponent: str, metric: str = "RMSE") -> str:
    """A paired interval of metric(method) − metric(opponent), lower is better (RMSE, MAE), in
    words: "better than MF (…)", "worse than …", or "not distinguishable from … on these users"."""
    where = direction(low, high)
    if where == "nan":
        return f"not compared with {opponent} (no paired interval)"
    words = {"below": f"better than {opponent}", "above": f"worse than {opponent}",
             "holds": f"not distinguishable from {opponent} on these users"}[where]
    return f"{words} (paired 95% interval of the {metric} difference {interval(low, high)})"


def auc_against_chance(low: float, high: float) -> str:
    """A 95% interval of a ROC-AUC against 0.5, chance: whether the predictions rank the liked
    ratings (4 and 5) above the others at all."""
    where = direction(low, high, 0.5)
    if where == "nan":
        return "has no AUC interval"
    ends = interval(low, high, signed=False)
    return {"above": f"ranks liked ratings above the others better than chance (AUC 95% interval {ends})",
            "below": f"ranks liked ratings below the others, worse than chance (AUC 95% interval {ends})",
            "holds": f"cannot be told from chance at ranking (its AUC 95% interval {ends} holds 0.5)"}[where]


def share(x: float) -> str:
    """A probability share as a percentage a reader can compare: "61.2%", "0.3%", "under 0.1%"."""
    return f"{x:.1%}" if x >= 0.001 else "under 0.1%"


def seeds_compare(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> str:
    """Two methods' RMSEs over the same seeds, in words: lower "in every seed" only when every
    seed of one is below every seed of the other; else the ranges, which overlap."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"seeds_compare needs at least one seed of each ({name_a}: {len(a)}, {name_b}: {len(b)})")
    if len(a) == 1 or len(b) == 1:
        return (f"{name_a} {a.mean():.3f}, {name_b} {b.mean():.3f}: "
                "with one seed, which is lower is not a finding")
    ranges = f"{name_a} {a.min():.3f}–{a.max():.3f}, {name_b} {b.min():.3f}–{b.max():.3f}"
    if a.max() < b.min():
        return f"{name_a} lower in every seed ({ranges})"
    if b.max() < a.min():
        return f"{name_b} lower in every seed ({ranges})"
    return f"the seeds overlap ({ranges})"


def metrics_line(m: dict, digits: int = 4) -> str:
    """A metrics dict as one rounded line: "RMSE 0.9991, MAE 0.7870, AUC 0.7287"."""
    names = {"rmse": "RMSE", "mae": "MAE", "auc": "AUC", "mrr": "MRR"}
    return ", ".join(f"{names.get(k, k)} {float(v):.{digits}f}" for k, v in m.items())
