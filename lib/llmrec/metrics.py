"""Metrics of rating prediction, the way the kit reports them.

- RMSE and MAE of the predicted rating against the true class 1–5; predictions are clipped to
  [1, 5] first, since every method is scored on that scale.
- For click prediction (ONCE, notebook 06), ranking metrics per impression, averaged over
  impressions as in the MIND evaluation: AUC, MRR (mean of 1/rank of each clicked item, divided
  by the number of clicked items) and nDCG@k (binary gains).
- ROC-AUC as Kang et al. use it for a classifier: the binary label is "the user liked it",
  rating >= 4 (LIKE_THRESHOLD), and the score is the predicted rating (for a classifier, the
  expected rating or the probability of 4–5 — both rank alike up to ties). A constant predictor
  scores 0.5.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import mean_absolute_error, mean_squared_error, ndcg_score, roc_auc_score

from .readings import direction, interval

LIKE_THRESHOLD = 4


def _check(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has shape {y_true.shape} but y_pred has {y_pred.shape}")
    if len(y_true) == 0:
        raise ValueError("no predictions to score (empty arrays)")
    if not np.isfinite(y_pred).all():
        raise ValueError(f"{int((~np.isfinite(y_pred)).sum())} predictions are NaN or infinite")
    return y_true, y_pred


def clip_ratings(y_pred, low: float = 1.0, high: float = 5.0) -> np.ndarray:
    return np.clip(np.asarray(y_pred, dtype=float), low, high)


def rmse(y_true, y_pred) -> float:
    y_true, y_pred = _check(y_true, y_pred)
    return float(np.sqrt(mean_squared_error(y_true, clip_ratings(y_pred))))


def mae(y_true, y_pred) -> float:
    y_true, y_pred = _check(y_true, y_pred)
    return float(mean_absolute_error(y_true, clip_ratings(y_pred)))


def roc_auc(y_true, score, threshold: int = LIKE_THRESHOLD) -> float:
    """ROC-AUC of `score` for the label rating >= threshold; NaN if only one class is present."""
    y_true, score = _check(y_true, score)
    labels = y_true >= threshold
    if labels.all() or not labels.any():
        return float("nan")
    return float(roc_auc_score(labels, score))


def rating_metrics(y_true, y_pred) -> dict[str, float]:
    """RMSE, MAE and AUC in one dict: the columns of every results table in the kit."""
    return {"rmse": rmse(y_true, y_pred), "mae": mae(y_true, y_pred),
            "auc": roc_auc(y_true, y_pred)}


def bootstrap_interval(y_true, y_pred, metric=rmse, *, baseline=None, groups=None,
                       n_boot: int = 1000, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of metric(y_pred) — or of metric(y_pred) - metric(baseline),
    paired on the same resamples, when `baseline` is given. It says how much of a difference on
    a few hundred test users is noise.

    Without `groups` the test examples are resampled; with `groups` (a user id per example)
    whole users are, with all their examples — use it when a user has several test ratings
    (the global_time split), whose errors are not independent. With one example per user
    (leave_last) both give the same interval."""
    y_true, y_pred = _check(y_true, y_pred)
    if baseline is not None:
        baseline = np.asarray(baseline, dtype=float)
    rng = np.random.default_rng(seed)
    n = len(y_true)
    members = None
    if groups is not None:
        if len(groups) != n:
            raise ValueError(f"groups has {len(groups)} entries for {n} examples")
        codes = pd.factorize(np.asarray(groups))[0]
        members = [np.flatnonzero(codes == g) for g in range(codes.max() + 1)]
    stats = np.empty(n_boot)
    for b in range(n_boot):
        if members is None:
            idx = rng.integers(0, n, n)
        else:
            idx = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
        value = metric(y_true[idx], y_pred[idx])
        if baseline is not None:
            value -= metric(y_true[idx], baseline[idx])
        stats[b] = value
    alpha = (1 - level) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return float(low), float(high)


def versus(y_true, predictions: dict, opponents: dict, *, groups=None, n_boot: int = 1000,
           seed: int = 0) -> pd.DataFrame:
    """One row per method: its RMSE and, for each opponent, the 95% paired-bootstrap interval
    of RMSE(method) - RMSE(opponent) on the same test users (`vs_<opponent>_low/high`). An
    interval entirely below 0: better than that opponent by more than the noise of this test
    set; one that contains 0: this test set cannot tell them apart."""
    rows = []
    for name, pred in predictions.items():
        row = {"method": name, "rmse": rmse(y_true, pred)}
        for opponent, reference in opponents.items():
            row[f"vs_{opponent}_low"], row[f"vs_{opponent}_high"] = bootstrap_interval(
                y_true, pred, baseline=reference, groups=groups, n_boot=n_boot, seed=seed)
        rows.append(row)
    return pd.DataFrame(rows)


def against(low, high) -> str:
    """A paired interval of an RMSE difference (method − opponent), in words."""
    where = direction(low, high)
    if where == "nan":
        return "no interval"
    word = {"below": "better", "above": "worse", "holds": "not distinguishable (the interval contains 0)"}[where]
    return f"{word}, {interval(low, high)}"


# --------------------------------------------------------------------------- click ranking


def mrr(labels, scores) -> float:
    """MIND's MRR of one impression: the mean over clicked items of 1 / their rank.

    Ties are given their expected value under a random order: a clicked item tied with m
    candidates (itself included) below `above` better ones gets the mean of 1/(above+1) ..
    1/(above+m). So a constant scorer gets the chance value, wherever the click stands."""
    labels, scores = np.asarray(labels, dtype=float), np.asarray(scores, dtype=float)
    total = 0.0
    for i in np.flatnonzero(labels):
        above = int((scores > scores[i]).sum())
        tied = int((scores == scores[i]).sum())
        total += labels[i] * np.mean(1.0 / np.arange(above + 1, above + tied + 1))
    return float(total / labels.sum())


def ndcg(labels, scores, k: int) -> float:
    """nDCG@k of one impression with binary gains (sklearn's ndcg_score, which averages the gains
    of tied candidates: the expected value under a random order of the ties)."""
    return float(ndcg_score([np.asarray(labels, dtype=float)], [np.asarray(scores, dtype=float)],
                            k=k))


def impression_metrics(labels: list, scores: list, ks=(5, 10)) -> dict[str, float]:
    """AUC, MRR and nDCG@k averaged over impressions (lists of per-impression arrays). Every
    impression needs a clicked and an unclicked candidate; scores must be finite."""
    return {k: float(v) for k, v in impression_table(labels, scores, ks).mean().items()}


def impression_table(labels: list, scores: list, ks=(5, 10)) -> pd.DataFrame:
    """One row per impression: its AUC, MRR and nDCG@k (what impression_metrics averages), for
    intervals over impressions (`seeds_interval`)."""
    if len(labels) != len(scores) or not labels:
        raise ValueError("labels and scores must be non-empty lists of the same length")
    rows = []
    for i, (y, s) in enumerate(zip(labels, scores)):
        if y is None:
            raise ValueError(f"impression {i} is unlabeled (the official MIND test set has no "
                             "labels); score the dev set instead")
        y, s = np.asarray(y, dtype=float), np.asarray(s, dtype=float)
        if y.shape != s.shape:
            raise ValueError(f"impression {i}: {len(y)} labels but {len(s)} scores")
        if not np.isfinite(s).all():
            raise ValueError(f"impression {i}: scores contain NaN or infinity")
        if y.min() == y.max():
            raise ValueError(f"impression {i}: needs a clicked and an unclicked candidate")
        rows.append([roc_auc_score(y, s), mrr(y, s)] + [ndcg(y, s, k) for k in ks])
    return pd.DataFrame(rows, columns=["auc", "mrr"] + [f"ndcg@{k}" for k in ks])


def seeds_interval(values, baseline=None, *, n_boot: int = 1000, level: float = 0.95,
                   seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of a method's mean over test units when it was trained with
    several seeds: `values` is [seeds, units] (each seed's value per unit, the units in the same
    order). Each resample draws the units and, independently, the seeds (with replacement), so the
    interval holds both the test set's noise and the seeds' spread. With `baseline` ([seeds',
    units], the opponent's), the interval of mean(values) - mean(baseline), paired on the units."""
    values = np.atleast_2d(np.asarray(values, dtype=float))
    other = None if baseline is None else np.atleast_2d(np.asarray(baseline, dtype=float))
    if other is not None and other.shape[1] != values.shape[1]:
        raise ValueError(f"paired values need the same units: {values.shape[1]} vs {other.shape[1]}")
    n = values.shape[1]
    if n < 2 or not np.isfinite(values).all() or (other is not None and not np.isfinite(other).all()):
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    for b in range(n_boot):
        units = rng.integers(0, n, n)
        stat = values[rng.integers(0, len(values), len(values))][:, units].mean()
        if other is not None:
            stat -= other[rng.integers(0, len(other), len(other))][:, units].mean()
        stats[b] = stat
    alpha = (1 - level) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return float(low), float(high)


def ratio_interval(numerator, denominator, level: float = 0.95) -> tuple[float, float, float]:
    """The ratio of two sets of timings paired step by step (step i of both timed on the same
    batch): the geometric mean of the per-step ratios and its t-interval on the log scale. Pairing
    removes what the batches add (their lengths vary); fewer than two pairs: nan bounds."""
    a, b = np.log(np.asarray(numerator, dtype=float)), np.log(np.asarray(denominator, dtype=float))
    if a.shape != b.shape:
        raise ValueError(f"paired timings need as many steps each: {a.shape} vs {b.shape}")
    d = a - b
    ratio = float(np.exp(d.mean()))
    if len(d) < 2:
        return ratio, float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return ratio, float(np.exp(d.mean() - half)), float(np.exp(d.mean() + half))
