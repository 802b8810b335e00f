"""Kang et al.'s protocol: each example is a user's N most recent rated items before a candidate,
plus the candidate; the target is the user's rating of the candidate.

Two splits, both free of leaks from the future into a user's history:

- "leave_last" (default): per user, ordered by time, the last rating is the test example and the
  one before it validation; every earlier rating is training data. A history only ever holds
  the user's own earlier ratings. Across users the split is not a single time cut: another
  user's training rating can be later than your test rating (standard leave-one-out).
- "global_time": one time cut for everybody: ratings after the `test_quantile` of timestamps are
  test, those between `val_quantile` and it validation. Nothing in training happens after any
  test rating; histories may include the same user's earlier val/test-period ratings only when
  they precede the target.

Ties (same timestamp) are ordered by item id so that the order, and so every split, is
deterministic; a history item then has a timestamp ≤ its target's and an earlier position.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .data import RatingData, check_load_kwargs, load_ratings, source_sha256
from .io import atomic_dir, sha256_file
from .paths import processed_dir

FORMAT_VERSION = 1
SPLITS = ("leave_last", "global_time")


@dataclass
class Processed:
    """A data set ready for every notebook.

    ratings:  one row per rating, ordered by user then time: user_idx, item_idx, rating,
              raw_rating, timestamp, position (0-based within the user), split
    items:    item_idx (1-based; 0 is padding), item_id, title, year, genres, …
    examples: the ratings with at least `min_history` earlier ratings, with their histories as
              wide columns hist_item_0.. / hist_rating_0.. (most recent first, 0 = padding)
    """

    ratings: pd.DataFrame
    items: pd.DataFrame
    examples: pd.DataFrame
    manifest: dict

    @property
    def content_id(self) -> str:
        """A fingerprint of the split's content (its files' sha256): results recorded with it are
        reused only for the same data — edited ratings with the same file names give another."""
        files = self.manifest.get("files") or {}
        if not files:  # not stored yet (a split built in memory): hash the tables themselves
            files = {name: hashlib.sha256(pd.util.hash_pandas_object(df, index=True).to_numpy().tobytes()).hexdigest()
                     for name, df in zip(_FILES, (self.ratings, self.items, self.examples))}
        return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def history_len(self) -> int:
        return self.manifest["params"]["history_len"]

    @property
    def n_users(self) -> int:
        return int(self.ratings["user_idx"].max()) + 1

    @property
    def n_items(self) -> int:
        return int(self.items["item_idx"].max())

    def split(self, name: str) -> pd.DataFrame:
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}; use 'train', 'val' or 'test'")
        return self.examples[self.examples["split"] == name]

    def sample(self, name: str, n: int | None, seed: int = 0) -> pd.DataFrame:
        """A split, or a reproducible random sample of n of its examples (None: all of them)."""
        df = self.split(name)
        return df if n is None else df.sample(min(n, len(df)), random_state=seed)

    def train_ratings(self) -> pd.DataFrame:
        """Every training rating (including each user's first, which has no history)."""
        return self.ratings[self.ratings["split"] == "train"]

    def hist_items(self, df: pd.DataFrame) -> np.ndarray:
        return df[[f"hist_item_{k}" for k in range(self.history_len)]].to_numpy()

    def hist_ratings(self, df: pd.DataFrame) -> np.ndarray:
        return df[[f"hist_rating_{k}" for k in range(self.history_len)]].to_numpy()

    def __repr__(self) -> str:
        counts = self.examples["split"].value_counts().to_dict()
        return (f"Processed({self.manifest['params']['dataset']}: {len(self.ratings):,} ratings, "
                f"{self.n_users:,} users, {self.n_items:,} items; examples train "
                f"{counts.get('train', 0):,} / val {counts.get('val', 0):,} / "
                f"test {counts.get('test', 0):,}; history_len {self.history_len})")


def sample_users(ratings: pd.DataFrame, max_users: int | None, seed: int) -> pd.DataFrame:
    """Keep a reproducible random subset of users (for the smoke preset)."""
    if max_users is None:
        return ratings
    if max_users < 1:
        raise ValueError(f"max_users must be a positive number or None, got {max_users}")
    users = np.sort(ratings["user_id"].unique())
    if max_users >= len(users):
        return ratings
    keep = np.random.default_rng(seed).choice(users, size=max_users, replace=False)
    return ratings[ratings["user_id"].isin(keep)]


def assign_splits(ratings: pd.DataFrame, split: str = "leave_last", *, n_val: int = 1,
                  n_test: int = 1, val_quantile: float = 0.8, test_quantile: float = 0.9,
                  min_train: int = 2) -> pd.DataFrame:
    """Order ratings by user and time, number them per user, and label each train/val/test."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
    r = ratings.sort_values(["user_idx", "timestamp", "item_idx"], kind="stable").reset_index(drop=True)
    r["position"] = r.groupby("user_idx").cumcount().astype(np.int64)
    labels = np.full(len(r), "train", dtype=object)
    if split == "leave_last":
        if n_val < 0 or n_test < 1:
            raise ValueError(f"need n_test >= 1 and n_val >= 0, got n_test={n_test}, n_val={n_val}")
        count = r.groupby("user_idx")["position"].transform("size").to_numpy()
        from_end = count - r["position"].to_numpy()  # 1 = the user's last rating
        eligible = count >= n_val + n_test + min_train  # users too short stay in training only
        labels[eligible & (from_end <= n_test)] = "test"
        labels[eligible & (from_end > n_test) & (from_end <= n_test + n_val)] = "val"
    else:
        if not 0 < val_quantile <= test_quantile < 1:
            raise ValueError("need 0 < val_quantile <= test_quantile < 1, got "
                             f"{val_quantile}, {test_quantile}")
        t_val, t_test = np.quantile(r["timestamp"], [val_quantile, test_quantile])
        ts = r["timestamp"].to_numpy()
        labels[ts > t_val] = "val"
        labels[ts > t_test] = "test"
    r["split"] = labels
    return r


def attach_histories(r: pd.DataFrame, history_len: int) -> pd.DataFrame:
    """Wide history columns: hist_item_k / hist_rating_k is the (k+1)-th most recent earlier
    rating of the same user, 0 where the user has fewer. Vectorised (ML-1M: about a second)."""
    if history_len < 1:
        raise ValueError(f"history_len must be at least 1, got {history_len}")
    pos = r["position"].to_numpy()
    items = r["item_idx"].to_numpy()
    ratings = r["rating"].to_numpy()
    cols = {}
    for k in range(history_len):
        lag = k + 1
        ok = pos >= lag  # rows are ordered by user and time, so row i-lag is the same user's
        src = np.arange(len(r)) - lag
        cols[f"hist_item_{k}"] = np.where(ok, items[np.maximum(src, 0)], 0)
        cols[f"hist_rating_{k}"] = np.where(ok, ratings[np.maximum(src, 0)], 0)
    out = pd.concat([r, pd.DataFrame(cols, index=r.index)], axis=1)
    out["hist_len"] = np.minimum(pos, history_len)
    return out


def build_processed(data: RatingData, *, history_len: int = 5, split: str = "leave_last",
                    min_history: int = 1, max_users: int | None = None, seed: int = 0,
                    **split_kwargs) -> Processed:
    """Index users and items, split, and build every example with its history."""
    ratings = sample_users(data.ratings, max_users, seed)
    items = data.items[data.items["item_id"].isin(ratings["item_id"])].copy()
    items = items.sort_values("item_id", key=lambda s: s.astype(str), kind="stable")
    items.insert(0, "item_idx", np.arange(1, len(items) + 1))
    users = np.sort(ratings["user_id"].astype(str).unique())
    user_index = pd.Series(np.arange(len(users)), index=users)
    r = ratings.assign(
        user_idx=user_index.loc[ratings["user_id"].astype(str)].to_numpy(),
        item_idx=ratings["item_id"].map(items.set_index("item_id")["item_idx"]).to_numpy())
    r = assign_splits(r, split, **split_kwargs)
    r = attach_histories(r, history_len)
    examples = r[r["hist_len"] >= min_history].reset_index(drop=True)
    for name in ("train", "test"):
        if not (examples["split"] == name).any():
            raise ValueError(
                f"the {name} split is empty ({len(r):,} ratings, {r.user_idx.nunique()} users, "
                f"split={split!r}, min_history={min_history}). Use more users (max_users), a "
                f"smaller min_history, or other split parameters.")
    manifest = {"format_version": FORMAT_VERSION,
                "params": dict(dataset=data.name, history_len=history_len, split=split,
                               min_history=min_history, max_users=max_users, seed=seed,
                               **split_kwargs),
                "source_sha256": data.source_sha256}
    ratings_cols = ["user_idx", "item_idx", "user_id", "item_id", "rating", "raw_rating",
                    "timestamp", "position", "split"]
    tables = [r[ratings_cols].copy(), items.reset_index(drop=True), examples]
    for df in tables:  # ids may mix ints and strings across data sets: one type, as cached
        for col in ("user_id", "item_id"):
            if col in df:
                df[col] = df[col].astype(str)
    return Processed(*tables, manifest)


# --------------------------------------------------------------------------- cache

_FILES = ("ratings.parquet", "items.parquet", "examples.parquet")


def _cache_key(params: dict) -> str:
    blob = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _write(processed: Processed, folder: Path) -> None:
    with atomic_dir(folder, shared=True) as tmp:  # named by its parameters: another process's is the same
        for name, df in zip(_FILES, (processed.ratings, processed.items, processed.examples)):
            df.to_parquet(tmp / name, index=False)
        manifest = dict(processed.manifest,
                        files={name: sha256_file(tmp / name) for name in _FILES},
                        created=time.strftime("%Y-%m-%dT%H:%M:%S"))
        # The manifest is written last: a folder without one is never trusted.
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    processed.manifest = manifest


def _read(folder: Path, params: dict) -> Processed | None:
    """The cached split if it is complete and was built from these parameters, else None."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(manifest, dict):  # `null` or `[]`: not a manifest this kit wrote
        return None
    if manifest.get("format_version") != FORMAT_VERSION or manifest.get("params") != params:
        return None
    files = manifest.get("files", {})
    for name in _FILES:
        path = folder / name
        if not path.is_file() or sha256_file(path) != files.get(name):
            return None
    ratings, items, examples = (pd.read_parquet(folder / n) for n in _FILES)
    return Processed(ratings, items, examples, manifest)


def ensure_processed(dataset: str = "movielens-small", *, history_len: int = 5,
                     split: str = "leave_last", min_history: int = 1,
                     max_users: int | None = None, seed: int = 0, rebuild: bool = False,
                     load_kwargs: dict | None = None, verbose: bool = True,
                     **split_kwargs) -> Processed:
    """Return the processed split, building and caching it when missing, stale or corrupt.

    Every notebook calls this instead of relying on files another notebook left behind. The cache
    lives in data/processed/<dataset>-<key>/ (or $LLMREC_DATA_DIR/processed) with a manifest of
    the parameters, the source's checksum and each file's sha256.
    """
    params = json.loads(json.dumps(dict(dataset=dataset, history_len=history_len, split=split,
                                        min_history=min_history, max_users=max_users, seed=seed,
                                        load_kwargs=load_kwargs or {}, **split_kwargs),
                             default=str))
    check_load_kwargs(dataset, load_kwargs or {})
    folder = processed_dir() / f"{dataset}-{_cache_key(params)}"
    if not rebuild:
        cached = _read(folder, params)
        # A changed source (an edited CSV, another download) invalidates the cache: checked
        # against the source files' checksums, without loading them.
        if cached is not None and \
                cached.manifest["source_sha256"] == source_sha256(dataset, **(load_kwargs or {})):
            if verbose:
                print(f"{dataset}, {split}, history {history_len}: the processed split, loaded from the data cache")
            return cached
        if cached is not None and verbose:
            print(f"{dataset}: its source files changed since the processed split was built: rebuilding it")
    data = load_ratings(dataset, **(load_kwargs or {}))
    processed = build_processed(data, history_len=history_len, split=split,
                                min_history=min_history, max_users=max_users, seed=seed,
                                **split_kwargs)
    processed.manifest["params"] = params  # the cache key's parameters, load_kwargs included
    _write(processed, folder)
    if verbose:
        print(f"{dataset}, {split}, history {history_len}: the processed split, built and kept in the data cache "
              f"({folder.parent.name}/)")
    return processed
