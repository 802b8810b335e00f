"""Data-efficiency experiments (Kang et al. 2023, notebook 05): the same methods trained on
nested fractions of the training examples, several seeds per point, each point stored as soon as
it is finished so that an interrupted run resumes where it stopped.

- `nested_subsets`: for one seed, a random order of the training examples; the subset for a
  fraction f is the first round(f * N) of that order, so 1% ⊂ 5% ⊂ 10% … and every method gets
  the same rows at the same (fraction, seed). It is the order pandas' `sample(n, random_state=seed)`
  draws, so seed 0's subsets are prefixes of the samples notebooks 03 and 04 use.
- `PointStore`: one JSON file per (method, fraction, seed) under a folder; a rerun skips the
  points that are there, recomputes a point whose file is corrupt or was made with other
  settings, and a half-written file never exists (atomic writes).
- `matching_fraction`: the smallest fraction at which a curve reaches a target (e.g. full-data
  MF's RMSE), with a log-linear interpolation of where it crossed.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from .baselines import BASELINE_SETTINGS, fit_baseline, predict_baseline
from .io import write_json
from .lm import build_rating_model, collator_for
from .metrics import rating_metrics
from .packed import PackedDataset, build_packed_model, collate_packed, predict_packed
from .readings import seeds_compare
from .training import TrainConfig, predict_dataset, seed_everything, train_with_trainer

POINT_FORMAT = 1
POINT_FIELDS = ("method", "fraction", "seed", "n_train", "metrics", "seconds", "settings")


# --------------------------------------------------------------------------- subsets


def check_fractions(fractions) -> list[float]:
    """Fractions as sorted unique floats in (0, 1]; a clear error otherwise."""
    try:
        values = sorted({float(f) for f in fractions})
    except (TypeError, ValueError) as e:
        raise ValueError(f"FRACTIONS must be a list of numbers in (0, 1], e.g. [0.01, 0.1, 1.0]; "
                         f"got {fractions!r}") from e
    if not values:
        raise ValueError("FRACTIONS is empty; give at least one fraction in (0, 1], e.g. [1.0]")
    bad = [f for f in values if not 0 < f <= 1 or math.isnan(f)]
    if bad:
        raise ValueError(f"FRACTIONS must lie in (0, 1] (1.0 = every training example); got {bad}. "
                         "A percentage such as 5 is written 0.05.")
    return values


def subset_size(n: int, fraction: float) -> int:
    """How many of n examples a fraction means: round(f * n), at least 1."""
    return max(1, min(n, round(fraction * n)))


def nested_subsets(examples: pd.DataFrame, fractions, seed: int) -> dict[float, pd.DataFrame]:
    """{fraction: the first subset_size(N, fraction) rows of a seeded random order}.

    The subsets of one seed are nested (each contains every smaller one); another seed draws
    another order. Rows keep their index, so subsets can be compared across methods."""
    fractions = check_fractions(fractions)
    if len(examples) == 0:
        raise ValueError("no training examples to draw subsets from")
    order = np.random.RandomState(seed).permutation(len(examples))
    return {f: examples.iloc[order[:subset_size(len(examples), f)]] for f in fractions}


# --------------------------------------------------------------------------- resumable points


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_")


class PointStore:
    """Finished (method, fraction, seed) points, one JSON file each, in `folder`.

    `run(method, fraction, seed, settings, compute)` returns the stored point when one exists
    with the same settings, otherwise calls compute() -> dict (at least "metrics" and "n_train")
    and stores its result atomically before returning it. A file that cannot be read, lacks a
    field or was made with other settings is recomputed (and the reason printed).
    """

    def __init__(self, folder: str | Path, verbose: bool = True):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.verbose = verbose
        self.computed, self.reused, self.recomputed = 0, 0, 0

    def path(self, method: str, fraction: float, seed: int) -> Path:
        return self.folder / f"{_slug(method)}__f{fraction:.6g}__s{seed}.json"

    def load(self, method: str, fraction: float, seed: int, settings: dict | None = None,
             quiet: bool = False) -> dict | None:
        """The stored point, or None (missing, unreadable, incomplete or other settings)."""
        path = self.path(method, fraction, seed)
        if not path.exists():
            return None
        problem = None
        try:
            point = json.loads(path.read_text())
            missing = [k for k in POINT_FIELDS if k not in point] if isinstance(point, dict) else None
            if missing is None:
                problem = f"not a point (it holds {type(point).__name__})"
            elif point.get("format") != POINT_FORMAT or missing:
                problem = f"missing fields {missing}" if missing else "another format"
            elif not isinstance(point["metrics"], dict) or not all(
                    isinstance(v, (int, float)) and math.isfinite(v) for v in point["metrics"].values()):
                problem = "no finite metrics"
            elif settings is not None and point["settings"] != json.loads(
                    json.dumps(settings, default=str)):
                problem = "made with other settings"
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as e:
            problem = f"unreadable ({type(e).__name__})"
        if problem:
            if self.verbose and not quiet:
                print(f"{path.name}: {problem}; recomputing it")
            return None
        return point

    def save(self, point: dict) -> Path:
        path = self.path(point["method"], point["fraction"], point["seed"])
        write_json(path, point)
        return path

    def run(self, method: str, fraction: float, seed: int, settings: dict,
            compute: Callable[[], dict]) -> dict:
        stored = self.load(method, fraction, seed, settings)
        if stored is not None:
            self.reused += 1
            return stored
        if self.path(method, fraction, seed).exists():
            self.recomputed += 1
        start = time.perf_counter()
        result = compute()
        point = {"format": POINT_FORMAT, "method": method, "fraction": fraction, "seed": seed,
                 "seconds": time.perf_counter() - start,
                 "settings": json.loads(json.dumps(settings, default=str)), **result}
        self.save(point)
        self.computed += 1
        return point

    def summary(self) -> str:
        return (f"{self.computed} points computed, {self.reused} reused from {self.folder}"
                + (f", {self.recomputed} recomputed (corrupt or stale)" if self.recomputed else ""))


def points_table(points: list[dict]) -> pd.DataFrame:
    """One row per (method, fraction, seed): n_train, seconds and every metric."""
    rows = [{"method": p["method"], "fraction": p["fraction"], "seed": p["seed"],
             "n_train": p["n_train"], "seconds": p["seconds"], **p["metrics"]} for p in points]
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    return table.sort_values(["method", "fraction", "seed"]).reset_index(drop=True)


def curve_summary(table: pd.DataFrame, metrics=("rmse", "auc")) -> pd.DataFrame:
    """Mean, standard deviation and number of seeds per (method, fraction)."""
    agg = {f"{m}_{s}": (m, s) for m in metrics for s in ("mean", "std")}
    return (table.groupby(["method", "fraction"], as_index=False)
            .agg(n_train=("n_train", "first"), seeds=("seed", "nunique"), **agg))


# --------------------------------------------------------------------------- reading the curve


def matching_fraction(fractions, values, target: float, lower_is_better: bool = True) -> dict:
    """The smallest fraction whose value reaches `target` (<= for RMSE, >= for AUC).

    Returns {"fraction": the first measured fraction that reaches it, or None if none does,
    "interpolated": where the straight line between it and the previous point (log fraction)
    crosses the target (equal to "fraction" when the first point already reaches it)}. Values
    are the mean over seeds; a curve that reaches the target and leaves it again still counts
    from its first crossing."""
    f = np.asarray(fractions, dtype=float)
    v = np.asarray(values, dtype=float)
    if f.shape != v.shape or f.ndim != 1 or len(f) == 0:
        raise ValueError("fractions and values must be 1-D arrays of the same, non-zero length")
    order = np.argsort(f)
    f, v = f[order], v[order]
    reached = v <= target if lower_is_better else v >= target
    if not reached.any():
        return {"fraction": None, "interpolated": None}
    i = int(np.argmax(reached))
    if i == 0:
        return {"fraction": float(f[0]), "interpolated": float(f[0])}
    x0, x1 = np.log(f[i - 1]), np.log(f[i])
    t = (target - v[i - 1]) / (v[i] - v[i - 1])
    return {"fraction": float(f[i]), "interpolated": float(np.exp(x0 + t * (x1 - x0)))}


def percent(fraction: float) -> str:
    """0.003 -> '0.3%', 1.0 -> '100%'."""
    return f"{100 * fraction:.3g}%"


def seeds_by_fraction(points: pd.DataFrame, method: str, other: str, metric: str = "rmse") -> dict[float, str]:
    """At each fraction where `method` has points: the two methods' seeds compared in words
    (llmrec.readings.seeds_compare: "lower in every seed" only when every seed agrees)."""
    per_seed = points.pivot_table(index=["fraction", "seed"], columns="method", values=metric)
    return {f: seeds_compare(g[method].dropna(), g[other].dropna(), method, other)
            for f, g in per_seed.groupby(level="fraction") if g[method].notna().any()}


def describe_match(method: str, match: dict, target_name: str, largest: float) -> str:
    """A sentence for the notebook and the results file."""
    if match["fraction"] is None:
        return (f"{method} never matches {target_name} here: not at any fraction up to "
                f"{percent(largest)} of the training data.")
    return (f"{method} matches {target_name} from {percent(match['fraction'])} of the training data "
            f"(interpolated crossing ≈ {percent(match['interpolated'])}).")


# --------------------------------------------------------------------------- convergence


def baseline_curve(history: pd.DataFrame, n_train: int, batch_size: int) -> list[dict]:
    """A baseline's per-epoch validation RMSE against the examples it has seen."""
    return [{"examples_seen": int(min(r.step * batch_size, r.epoch * n_train)),
             "val_rmse": float(r.val_rmse)} for r in history.itertuples()]


def trainer_curve(log: pd.DataFrame, batch_size: float) -> list[dict]:
    """A Trainer log's validation RMSE (square root of the validation MSE) against examples
    seen (`batch_size`: examples per step)."""
    if "eval_loss" not in log:
        return []
    rows = log.dropna(subset=["eval_loss"])
    return [{"examples_seen": int(round(step * batch_size)), "val_rmse": float(np.sqrt(loss))}
            for step, loss in zip(rows["step"], rows["eval_loss"])]


# --------------------------------------------------------------------------- training one point


def scaled_schedule(n: int, batch_size: int, epochs: int, min_steps: int,
                    min_batches: int = 8) -> tuple[int, int]:
    """(batch size, epochs) for a subset of n examples, so that a small subset is trained as
    seriously as a large one: at least `min_batches` batches per epoch (the batch shrinks, down to
    16) and at least `min_steps` optimiser steps in all (more epochs). Early stopping on the
    validation set still decides when to stop."""
    batch = min(batch_size, max(16, math.ceil(n / min_batches)))
    steps_per_epoch = math.ceil(n / batch)
    return batch, max(epochs, math.ceil(min_steps / steps_per_epoch))


def baseline_point(name: str, processed, subset: pd.DataFrame, test: pd.DataFrame, *,
                   seed: int, val: pd.DataFrame | None = None, epochs: int = 30,
                   min_steps: int = 200, max_steps: int | None = None,
                   model_params: dict | None = None) -> dict:
    """Train baseline `name` (the settings of notebook 02, updated by `model_params`, e.g. the
    item_text of Text-aware MF) on `subset`, early-stopping on `val` (default: the whole
    validation split); score it on `test`."""
    setting = BASELINE_SETTINGS[name]
    batch, n_epochs = scaled_schedule(len(subset), setting["train"]["batch_size"], epochs,
                                      min_steps)
    config = TrainConfig(**{**setting["train"], "batch_size": batch}, epochs=n_epochs,
                         max_steps=max_steps, seed=seed)
    model, result = fit_baseline(name, processed, config, {**setting["model"], **(model_params or {})},
                                 train_examples=subset, val_examples=val)
    pred = predict_baseline(model, processed, test)
    return {"n_train": len(subset), "metrics": rating_metrics(test["rating"].to_numpy(), pred),
            "curve": baseline_curve(result.history, len(subset), batch),
            "train_seconds": result.seconds, "epochs": int(result.history["epoch"].max())}


def _steps(n: int, epochs: int, batch_size: int, min_steps: int, max_steps: int | None) -> int:
    """Optimiser steps of a language-model point: `epochs` over n items, at least `min_steps`,
    at most `max_steps` (smoke)."""
    steps = max(math.ceil(epochs * n / batch_size), min_steps)
    return min(steps, max_steps) if max_steps else steps


def lm_point(lm, train_dataset, val_dataset, test_dataset, y_test, *, seed: int,
             output_dir, top_layers: int | None = None, lora: bool = False,
             init_rating: float = 3.5, epochs: int = 1, min_steps: int = 0,
             lr: float = 1e-4, batch_size: int = 16, max_steps: int | None = None,
             precision: str = "fp32", eval_points: int = 4) -> dict:
    """Fine-tune a fresh regression head (and the top layers, or every layer) of `lm` on
    `train_dataset`; score it on the test set. At least `min_steps` steps (more epochs for a small
    subset); `max_steps` caps it (smoke)."""
    n = len(train_dataset)
    steps = _steps(n, epochs, batch_size, min_steps, max_steps)
    seed_everything(seed)
    model = build_rating_model(lm, "regression", top_layers=top_layers, lora=lora,
                               init_rating=init_rating)
    model.to(next(lm.model.parameters()).device)
    start = time.perf_counter()
    _, log = train_with_trainer(model, train_dataset, val_dataset, collator_for(lm),
                                output_dir=output_dir, lr=lr, batch_size=batch_size, seed=seed,
                                max_steps=steps, precision=precision, eval_points=eval_points)
    train_seconds = time.perf_counter() - start
    pred, _ = predict_dataset(model, test_dataset, collator_for(lm), autocast=str(precision) == "bf16")
    return {"n_train": n, "metrics": rating_metrics(y_test, pred),
            "curve": trainer_curve(log, batch_size), "train_seconds": train_seconds,
            "steps": steps}


def packed_targets(seqs, subset: pd.DataFrame) -> pd.DataFrame:
    """The training targets of packed sequences (llmrec.packed) whose rating is in `subset` (rows
    of the processed examples). At a fraction of the training data the packed model is scored on
    the ratings that fraction holds; the user's other ratings stay in its sequence as context, as
    the history stays in a prompt (Kang et al.) and in Transformer+MLP's input."""
    train = seqs.targets("train")
    wanted = pd.MultiIndex.from_frame(subset[["user_idx", "position"]])
    return train[pd.MultiIndex.from_frame(train[["user_idx", "position"]]).isin(wanted)]


def packed_point(lm, inputs, train_slots: pd.DataFrame, val_slots: pd.DataFrame,
                 test_slots: pd.DataFrame, *, seed: int, output_dir, top_layers: int | None = 2,
                 init_rating: float = 3.5, epochs: int = 1, min_steps: int = 0, lr: float = 3e-4,
                 batch_size: int = 8, max_steps: int | None = None, precision: str = "fp32",
                 eval_points: int = 2, head: str = "regression", keep_predictions: bool = False) -> dict:
    """lm_point for the packed formulation: a fresh head (regression, or classification over the
    rating tokens) and top layers trained on the slots `train_slots` of the cached sequences
    `inputs` (at least `min_steps` steps), the best of `eval_points` checkpoints kept on
    `val_slots`; scored on `test_slots` (the test examples' slots, in their order). With
    `keep_predictions` the test predictions come back too ("predictions")."""
    if train_slots.empty:
        raise ValueError("no training target of the packed sequences falls in this subset: raise the "
                         "smallest fraction the language model trains on (LM_FRACTIONS)")
    key = "inputs_embeds" if top_layers is not None else "input_ids"
    train, val, test = (PackedDataset(inputs, s, key=key) for s in (train_slots, val_slots, test_slots))
    steps = _steps(len(train), epochs, batch_size, min_steps, max_steps)
    seed_everything(seed)
    model = build_packed_model(lm, head, top_layers=top_layers, init_rating=init_rating)
    model.to(next(lm.model.parameters()).device)
    start = time.perf_counter()
    _, log = train_with_trainer(model, train, val, collate_packed, output_dir=output_dir, lr=lr,
                                batch_size=batch_size, eval_batch_size=batch_size, seed=seed,
                                max_steps=steps, precision=precision, eval_points=eval_points,
                                prediction_loss_only=True)
    train_seconds = time.perf_counter() - start
    pred, _ = predict_packed(model, test, autocast=str(precision) == "bf16")
    # examples seen = rating targets: a step of `batch_size` sequences holds this many on average
    per_step = batch_size * len(train_slots) / len(train)
    point = {"n_train": len(train_slots), "metrics": rating_metrics(test_slots["rating"].to_numpy(), pred),
             "curve": trainer_curve(log, per_step) if head == "regression" else [],
             "train_seconds": train_seconds, "steps": steps, "sequences": len(train)}
    return {**point, "predictions": pred} if keep_predictions else point


def subset_id(subset: pd.DataFrame) -> str:
    """A short fingerprint of a subset: which rows it holds and what they hold (stored with each
    point, so that a point made from other rows — or from the same rows with edited ratings — is
    never reused)."""
    rows = pd.util.hash_pandas_object(subset, index=True).to_numpy()
    return hashlib.sha256(rows.tobytes()).hexdigest()[:16]
