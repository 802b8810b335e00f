"""Click data for content-based recommendation (ONCE/DIRE, notebook 06).

One shape for every source: a table of items with text fields, and a table of impressions —
a user's history (item ids clicked before, oldest first), the candidates shown, and which were
clicked (labels; None for the unlabeled official MIND test set).

- MIND: the official news.tsv / behaviors.tsv (format below), from local folders or downloaded
  from a configured URL.
- Goodreads: a books table (book_id, title, description, …) and an interactions table
  (user_id, book_id, rating, timestamp), turned into a click task like MovieLens.
- MovieLens (the embedded default) or any rating data set: items with title, year and genres;
  see `click_task` and `rating_clicks`.

`click_task` turns ratings into impressions without looking into the future: per user, in time
order, each liked item (rating >= `like`) is one impression whose history is the items the user
liked strictly *before* it; the negatives are items that were in the catalogue then (they had
enough ratings, counted from the past) and that this user had not rated by then. The candidates
are shown in a random order. The user's last impression is the test impression, the one before
it the validation one, the earlier ones are for training.

Unknown item ids in MIND impressions or histories (an id missing from news.tsv) are skipped and
counted in `ClickData.skipped`; an impression left without a clicked and an unclicked candidate is
dropped (counted too). A malformed line is refused with its file and line number.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .data import _download_url, load_ratings, to_unix_seconds
from .data import _read_table as read_table
from .io import atomic_dir, sha256_file
from .paths import raw_dir, resolve_data_path

MIND_NEWS_COLUMNS = ["news_id", "category", "subcategory", "title", "abstract", "url",
                     "title_entities", "abstract_entities"]
MIND_BEHAVIOR_COLUMNS = ["impression_id", "user_id", "time", "history", "impressions"]
# The official MIND archives (Microsoft News Dataset; see its licence before downloading).
MIND_URLS = {
    "small-train": "https://mind201910small.blob.core.windows.net/release/MINDsmall_train.zip",
    "small-dev": "https://mind201910small.blob.core.windows.net/release/MINDsmall_dev.zip",
}


@dataclass
class ClickData:
    """items: item_id (str) + text fields; impressions: impression_id, user_id, split,
    history (list of item ids, oldest first), candidates (list), labels (list of 0/1, or None)."""

    name: str
    label: str  # what an item is, for the natural concator: "news article", "movie", "book"
    fields: list[str]  # the text fields of an item, in the order the concator writes them
    items: pd.DataFrame
    impressions: pd.DataFrame
    skipped: dict = field(default_factory=dict)
    source: str = ""  # a checksum of the source data (for cache manifests)

    def split(self, name: str) -> pd.DataFrame:
        return self.impressions[self.impressions["split"] == name]

    def __repr__(self) -> str:
        imp = self.impressions
        counts = imp["split"].value_counts().to_dict() if "split" in imp else {}
        users = imp["user_id"].nunique() if "user_id" in imp else 0
        return (f"ClickData({self.name}: {len(self.items):,} items, "
                f"{users:,} users, impressions "
                + (", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())) or "none")
                + (f"; skipped {self.skipped}" if any(self.skipped.values()) else "") + ")")


# --------------------------------------------------------------------------- MIND


class MalformedLine(ValueError):
    pass


def _rows(path: Path, columns: list[str]):
    """(line number, tab-separated fields) of each non-empty line; a line with another number of
    fields is refused."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n").rstrip("\r")
            if not line:
                continue
            parts = line.split("\t")
            if len(parts) != len(columns):
                raise MalformedLine(f"{path}, line {number}: expected {len(columns)} tab-separated "
                                    f"columns ({', '.join(columns)}), found {len(parts)}")
            yield number, parts


def read_mind_news(path: str | Path) -> pd.DataFrame:
    """news.tsv: 8 tab-separated columns, no header. Missing abstracts become ""; the entity
    columns (JSON lists) are parsed, an empty one becomes []."""
    path = Path(path)
    rows = []
    for number, parts in _rows(path, MIND_NEWS_COLUMNS):
        row = dict(zip(MIND_NEWS_COLUMNS, parts))
        for col in ("title_entities", "abstract_entities"):
            try:
                row[col] = json.loads(row[col]) if row[col].strip() else []
            except json.JSONDecodeError as e:
                raise MalformedLine(f"{path}, line {number}: {col} is not JSON ({e})") from None
        rows.append(row)
    news = pd.DataFrame(rows, columns=MIND_NEWS_COLUMNS)
    if news["news_id"].duplicated().any():
        dup = news.loc[news["news_id"].duplicated(), "news_id"].iloc[0]
        raise MalformedLine(f"{path}: news id {dup!r} appears twice")
    return news.rename(columns={"news_id": "item_id"})


def read_mind_behaviors(path: str | Path) -> pd.DataFrame:
    """behaviors.tsv: impression_id, user_id, time, history (space-separated ids, may be empty),
    impressions (space-separated `id-label`, or bare ids in the unlabeled test split)."""
    path = Path(path)
    rows = []
    for number, parts in _rows(path, MIND_BEHAVIOR_COLUMNS):
        impression_id, user_id, time, history, shown = parts
        tokens = shown.split()
        if not tokens:
            raise MalformedLine(f"{path}, line {number}: the impression shows no news")
        labelled = ["-" in t for t in tokens]
        if any(labelled) and not all(labelled):
            raise MalformedLine(f"{path}, line {number}: some candidates have a label and some "
                                "do not")
        candidates, labels = [], None
        if all(labelled):
            labels = []
            for t in tokens:
                news_id, _, label = t.rpartition("-")
                if label not in ("0", "1"):
                    raise MalformedLine(f"{path}, line {number}: candidate {t!r} must end in -0 "
                                        "or -1")
                candidates.append(news_id)
                labels.append(int(label))
        else:
            candidates = tokens
        rows.append({"impression_id": impression_id, "user_id": user_id,
                     "time": pd.to_datetime(time, format="%m/%d/%Y %I:%M:%S %p", errors="coerce"),
                     "history": history.split(), "candidates": candidates, "labels": labels})
        if pd.isna(rows[-1]["time"]):
            raise MalformedLine(f"{path}, line {number}: time {time!r} is not like "
                                "'11/15/2019 8:55:22 AM'")
    return pd.DataFrame(rows, columns=MIND_BEHAVIOR_COLUMNS[:3] + ["history", "candidates",
                                                                   "labels"])


def _drop_unknown(impressions: pd.DataFrame, known: set) -> tuple[pd.DataFrame, dict]:
    skipped = {"unknown_history_ids": 0, "unknown_candidate_ids": 0, "impressions_dropped": 0}
    rows = []
    for row in impressions.to_dict("records"):
        history = [i for i in row["history"] if i in known]
        skipped["unknown_history_ids"] += len(row["history"]) - len(history)
        keep = [k for k, i in enumerate(row["candidates"]) if i in known]
        skipped["unknown_candidate_ids"] += len(row["candidates"]) - len(keep)
        labels = None if row["labels"] is None else [row["labels"][k] for k in keep]
        if not keep or (labels is not None and len(set(labels)) < 2):
            skipped["impressions_dropped"] += 1
            continue
        rows.append({**row, "history": history, "candidates": [row["candidates"][k] for k in keep],
                     "labels": labels})
    return pd.DataFrame(rows, columns=impressions.columns), skipped


def load_mind(folders: dict[str, str | Path], name: str = "mind") -> ClickData:
    """MIND from unpacked official folders, e.g. {"train": "MINDsmall_train", "val":
    "MINDsmall_dev"} (each holds news.tsv and behaviors.tsv; a "test" split may be unlabeled).
    The news tables are merged; unknown ids are skipped and counted (module docstring)."""
    if not folders:
        raise ValueError("load_mind needs at least one folder, e.g. {'train': 'MINDsmall_train'}")
    news, behaviors, digests = [], [], []
    for split, folder in folders.items():
        folder = Path(folder)
        for f in ("news.tsv", "behaviors.tsv"):
            if not (folder / f).is_file():
                raise FileNotFoundError(f"{folder / f} not found: a MIND folder holds news.tsv "
                                        "and behaviors.tsv (unpack the official zip there, or "
                                        "use download_mind)")
            digests.append(sha256_file(folder / f))
        news.append(read_mind_news(folder / "news.tsv"))
        b = read_mind_behaviors(folder / "behaviors.tsv")
        # impression ids restart at 1 in every MIND file: prefix them with the split
        behaviors.append(b.assign(split=split, impression_id=split + "-" + b["impression_id"]))
    items = pd.concat(news).drop_duplicates("item_id").reset_index(drop=True)
    impressions, skipped = _drop_unknown(pd.concat(behaviors, ignore_index=True),
                                         set(items["item_id"]))
    for (split, folder), b in zip(folders.items(), behaviors):
        labelled = b[b["labels"].notna()]
        if len(labelled) and not (impressions["split"] == split).any():
            known = set(items["item_id"])
            ids = [i for c in labelled["candidates"] for i in c]
            missing = sum(i not in known for i in ids)
            if not missing:
                raise ValueError(
                    f"{Path(folder) / 'behaviors.tsv'}: none of its {len(labelled)} impressions "
                    "shows both a click and a non-click, so there is nothing to learn or rank "
                    "(each impression needs a '-1' and a '-0' candidate)")
            raise ValueError(
                f"{Path(folder) / 'news.tsv'} looks truncated (or belongs to another MIND folder): "
                f"none of the {len(labelled)} impressions of {Path(folder) / 'behaviors.tsv'} "
                f"keeps both a click and a non-click among news it knows: {missing} of their {len(ids)} candidate ids are "
                f"not among its {len(news[list(folders).index(split)])} news. Unpack the "
                "official zip again (or run download_mind) and rerun.")
    return ClickData(name, "news article", ["title", "abstract", "category", "subcategory"],
                     items, impressions, skipped, source="-".join(d[:12] for d in digests))


def download_mind(which: str = "small-train", url: str | None = None,
                  folder: str | Path | None = None, sha256: str | None = None) -> Path:
    """Download and unpack an official MIND archive (`which` names one of MIND_URLS, or give
    `url`) into folder (default: <data cache>/raw/mind/<which>); returns the unpacked folder.

    The archive is checked against `sha256` when it is known, and unpacked into a temporary
    folder that takes the final name only once complete (marked by a `.complete` file): an
    interrupted unzip is never trusted, it is unpacked again."""
    url = url or MIND_URLS.get(which)
    if url is None:
        raise ValueError(f"unknown MIND archive {which!r}; choose one of {sorted(MIND_URLS)} or "
                         "pass url=")
    target = Path(folder) if folder else raw_dir() / "mind" / which
    if (target / ".complete").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    archive = target.with_suffix(".zip")
    if not archive.is_file():
        try:
            _download_url(url, archive)
        except ConnectionError as e:
            raise ConnectionError(
                f"MIND ({which}) cannot be downloaded here. Download it where there is a "
                "network, unpack it, and pass the folders: DATA_PATHS = {'train': "
                f"'path/MINDsmall_train', 'val': 'path/MINDsmall_dev'}}. The error: {e}") from None
    if sha256 and sha256_file(archive) != sha256:
        archive.unlink()
        raise ValueError(f"{archive}: its sha256 does not match the expected {sha256} (a partial "
                         "or altered download); it was deleted, run again to download it anew")
    try:
        with zipfile.ZipFile(archive) as zf, atomic_dir(target, shared=True) as tmp:
            zf.extractall(tmp)
            (tmp / ".complete").write_text(url + "\n")
    except zipfile.BadZipFile:
        archive.unlink()
        raise ValueError(f"{archive} is not a valid zip (a partial download?); it was deleted, "
                         "run again to download it anew") from None
    return target


# --------------------------------------------------------------------------- ratings -> clicks


def catalogue_entry_times(ratings: pd.DataFrame, min_item_ratings: int = 1) -> pd.Series:
    """When each item enters the catalogue: the time of its `min_item_ratings`-th rating, sorted.
    At time t the catalogue is the items whose entry time is < t, so that popularity is only
    ever counted from the past. Items with fewer ratings never enter."""
    if min_item_ratings < 1:
        raise ValueError(f"min_item_ratings must be at least 1, got {min_item_ratings}")
    r = ratings.sort_values(["item_id", "timestamp"], kind="stable")
    nth = r[r.groupby("item_id").cumcount() == min_item_ratings - 1]
    return nth.set_index("item_id")["timestamp"].sort_values(kind="stable")


def _likes_with_history(g: pd.DataFrame, times: np.ndarray, entry: np.ndarray, like: float,
                        history_len: int, min_history: int) -> list[tuple[int, int, list]]:
    """One user's likes that can be impressions, as (n: the n-th like, j: its row in `g`, the
    history): the liked item was in the catalogue before its time t, and at least `min_history`
    earlier likes were too (the latest `history_len` of them make the history)."""
    items = g["item_id"].to_numpy()
    liked = np.flatnonzero(g["rating"].to_numpy() >= like)
    out = []
    for n, j in enumerate(liked):  # the user's n-th like
        t = times[j]
        if not entry[j] < t:
            continue  # not in the catalogue yet: it could not have been shown
        earlier = liked[(times[liked] < t) & (entry[liked] < t)]  # strictly earlier
        history = items[earlier][-history_len:]
        if len(history) >= min_history:
            out.append((n, j, list(history)))
    return out


def _split_from_end(from_end: int) -> str:
    """A user's last impression is test, the one before it validation, the rest training."""
    return "test" if from_end == 1 else "val" if from_end == 2 else "train"


def _sample_negatives(rng: np.random.Generator, catalogue: np.ndarray, n_neg: int,
                      first_rated: dict, t) -> list:
    """`n_neg` distinct items of the catalogue at t (`catalogue`: the items that entered before
    t) that the user had not rated by t, drawn at random."""
    negs: list = []
    while len(negs) < n_neg:
        for c in catalogue[rng.integers(0, len(catalogue), size=2 * n_neg)]:
            if len(negs) < n_neg and c not in negs and not first_rated.get(c, t + 1) <= t:
                negs.append(c)
    return negs


def click_task(ratings: pd.DataFrame, items: pd.DataFrame, *, name: str, label: str,
               fields: list[str], like: float = 4, history_len: int = 10, min_history: int = 3,
               negatives: int = 4, eval_negatives: int = 9, min_item_ratings: int = 1,
               users=None, max_train_per_user: int | None = None, seed: int = 0,
               source: str = "") -> ClickData:
    """Impressions from ratings (columns user_id, item_id, rating, timestamp), as described in the
    module docstring. Only what is known at the impression's time t is used:

    - the catalogue at t is the items with at least `min_item_ratings` ratings before t
      (anyone's); a click on an item not yet in it is not an impression, and a history keeps
      the earlier likes that are in it;
    - the negatives are distinct items of the catalogue at t that the user has not rated by t
      (an item the user rates later may be one: nobody knows that at t);
    - the candidates are shown in a random order (ties in a score must not favour the click).

    Training impressions show 1 + `negatives` candidates, validation and test ones
    1 + `eval_negatives`. `users` limits the impressions to these users (the catalogue still
    counts everybody's ratings); `max_train_per_user` keeps each user's latest training ones."""
    need = {"user_id", "item_id", "rating", "timestamp"} - set(ratings.columns)
    if need:
        raise ValueError(f"ratings lack the column(s) {sorted(need)}")
    rng = np.random.default_rng(seed)
    r = ratings.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    entry = catalogue_entry_times(r, min_item_ratings)
    catalogue, catalogue_t = entry.index.to_numpy(), entry.to_numpy()
    entry_of = entry.to_dict()
    if users is not None:
        r = r[r["user_id"].isin(set(users))]
    rows = []
    for user, g in r.groupby("user_id", sort=True):
        g_items, g_times = g["item_id"].to_numpy(), g["timestamp"].to_numpy()
        g_entry = np.array([entry_of.get(i, np.inf) for i in g_items], dtype=float)
        first_rated = {}
        for i, t in zip(g_items, g_times):
            first_rated.setdefault(i, t)
        likes = _likes_with_history(g, g_times, g_entry, like, history_len, min_history)
        for k, (n, j, history) in enumerate(likes):
            split = _split_from_end(len(likes) - k)
            if split == "train" and max_train_per_user and len(likes) - k - 2 > max_train_per_user:
                continue
            n_neg = negatives if split == "train" else eval_negatives
            t = g_times[j]
            existing = int(np.searchsorted(catalogue_t, t, side="left"))  # entered before t
            rated_then = int(((g_times <= t) & (g_entry < t)).sum())  # of those, rated by t
            if existing - rated_then < n_neg:
                continue  # too early in the data for enough negatives
            negs = _sample_negatives(rng, catalogue[:existing], n_neg, first_rated, t)
            candidates = [g_items[j], *negs]
            order = rng.permutation(len(candidates))
            rows.append({"impression_id": f"{user}-{n}", "user_id": user, "split": split,
                         "time": t, "history": [str(i) for i in history],
                         "candidates": [str(candidates[o]) for o in order],
                         "labels": [int(o == 0) for o in order]})
    if not rows:
        raise ValueError(f"{name}: no impressions could be built (min_history={min_history}, "
                         f"like={like}, min_item_ratings={min_item_ratings}); lower min_history "
                         "or min_item_ratings, or use more data")
    items = items.assign(item_id=items["item_id"].astype(str))
    return ClickData(name, label, fields, items.reset_index(drop=True), pd.DataFrame(rows),
                     source=source)


def rating_clicks(dataset: str = "movielens-small", *, load_kwargs: dict | None = None,
                  min_item_ratings: int = 10, max_users: int | None = None, seed: int = 0,
                  **kwargs) -> ClickData:
    """A rating data set (the embedded MovieLens by default; any name llmrec.data loads, your
    own with `load_kwargs`) as a click task, items written as title, year and genres. An item
    enters the catalogue once it has `min_item_ratings` ratings (rare ones carry little signal
    and make the catalogue, hence the layer cache, larger); `max_users` builds impressions for a
    seeded sample of users only (smoke preset)."""
    data = load_ratings(dataset, **(load_kwargs or {}))
    users = None
    if max_users:
        all_users = data.ratings["user_id"].drop_duplicates()
        users = all_users.sample(min(max_users, len(all_users)), random_state=seed)
    items = data.items.copy()
    items["genres"] = items["genres"].str.replace("|", ", ", regex=False)
    items["year"] = items["year"].astype("Int64").astype(str).replace("<NA>", "")
    label = "movie" if dataset.startswith(("movielens", "ml-")) else "item"
    return click_task(data.ratings, items, name=dataset, label=label,
                      fields=["title", "year", "genres"], min_item_ratings=min_item_ratings,
                      users=users, seed=seed,
                      source=f"{data.source_sha256[:16]}-min{min_item_ratings}-u{max_users}",
                      **kwargs)


def load_goodreads(books: str | Path, interactions: str | Path, **kwargs) -> ClickData:
    """Goodreads: `books` (CSV or JSON lines: book_id, title, description[, authors]) and
    `interactions` (CSV or JSON lines: user_id, book_id, rating, and a time column —
    timestamp, date_updated or date_added), as a click task like MovieLens."""
    books_df, inter = _read_table(books), _read_table(interactions)
    missing = {"book_id", "title", "description"} - set(books_df.columns)
    if missing:
        raise ValueError(f"{books}: the books table lacks {sorted(missing)}")
    time_col = next((c for c in ("timestamp", "date_updated", "date_added") if c in inter), None)
    missing = {"user_id", "book_id", "rating"} - set(inter.columns)
    if missing or time_col is None:
        raise ValueError(f"{interactions}: the interactions table lacks "
                         f"{sorted(missing) or ['a time column (timestamp/date_updated/date_added)']}")
    times = to_unix_seconds(inter[time_col], f"{interactions}, column {time_col}")
    ratings = pd.DataFrame({"user_id": inter["user_id"].astype(str),
                            "item_id": inter["book_id"].astype(str),
                            "rating": pd.to_numeric(inter["rating"]), "timestamp": times})
    ratings = ratings[ratings["item_id"].isin(set(books_df["book_id"].astype(str)))]
    items = books_df.rename(columns={"book_id": "item_id"}).assign(
        description=lambda d: d["description"].fillna("").astype(str))
    digest = "-".join(sha256_file(p)[:12] for p in (books, interactions))
    return click_task(ratings, items, name="goodreads", label="book",
                      fields=["title", "description"], source=digest, **kwargs)


def _read_table(path: str | Path) -> pd.DataFrame:
    """JSON lines (Goodreads' own dumps) or any table llmrec.data reads (CSV, TSV, Parquet)."""
    path = resolve_data_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    if path.suffix in (".json", ".jsonl") or path.name.endswith(".json.gz"):
        return pd.read_json(path, lines=True)
    return read_table(path)


# --------------------------------------------------------------------------- text


def natural_concator(item: dict, label: str, fields: list[str], max_chars: int = 400) -> str:
    """ONCE's natural concator: the kind of item, then each field introduced by its name.

    >>> natural_concator({"title": "Heat", "year": "1995", "genres": "Action, Crime"}, "movie",
    ...                  ["title", "year", "genres"])
    'movie: title: Heat; year: 1995; genres: Action, Crime'
    Empty fields are left out; a long field is cut at `max_chars`."""
    parts = []
    for f in fields:
        value = item.get(f)
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        value = " ".join(str(value).split())[:max_chars]
        if value:
            parts.append(f"{f}: {value}")
    return f"{label}: " + "; ".join(parts)


def item_texts(data: ClickData, max_chars: int = 400) -> dict[str, str]:
    """{item_id: concatenated text} for every item."""
    return {row["item_id"]: natural_concator(row, data.label, data.fields, max_chars)
            for row in data.items.to_dict("records")}


# --------------------------------------------------------------------------- training rows


def training_samples(impressions: pd.DataFrame, negatives: int = 4, seed: int = 0) -> pd.DataFrame:
    """One row per clicked candidate: it first, then `negatives` unclicked candidates of the same
    impression (drawn with replacement when the impression shows fewer) — the paper's "4
    negatives per positive". An impression with one click and `negatives` others keeps them.
    (The click model scores each candidate on its own, so the order here changes nothing.)"""
    rng = np.random.default_rng(seed)
    rows = []
    for row in impressions.to_dict("records"):
        labels, cands = row["labels"], row["candidates"]
        if labels is None:
            raise ValueError(f"impression {row['impression_id']} has no labels (an official "
                             "test impression); it cannot be trained on")
        pos = [c for c, y in zip(cands, labels) if y == 1]
        neg = [c for c, y in zip(cands, labels) if y == 0]
        if not pos or not neg:
            continue
        for k, p in enumerate(pos):
            if len(pos) == 1 and len(neg) == negatives:
                picked = neg
            else:
                picked = list(rng.choice(neg, negatives, replace=len(neg) < negatives))
            rows.append({**row, "impression_id": f"{row['impression_id']}-{k}",
                         "candidates": [p] + [str(c) for c in picked],
                         "labels": [1] + [0] * negatives})
    if not rows:
        raise ValueError(f"no training samples: none of the {len(impressions):,} training "
                         "impressions has both a clicked and an unclicked candidate")
    return pd.DataFrame(rows, columns=impressions.columns)


def with_splits(data: ClickData, n_val: int = 1000, n_test: int = 2000,
                min_test: int = 30) -> ClickData:
    """Train, validation and test impressions, with no test impression ever used for a choice.

    - Unlabeled impressions (the official MIND test set) can be neither scored nor used to
      choose: they are dropped and counted in `skipped["unlabeled_impressions"]`.
    - Test: the labelled "test" split if there is one; else the "val" split (MIND's dev set,
      its usual test set); else the latest `n_test` training impressions (by time).
    - Validation: the "val" split if it is not the test set; else the latest `n_val` of the
      remaining training impressions, so it is carved out of MIND-train, like MIND-dev, from
      its last days.
    Fewer than `min_test` test impressions, or no training impression left, is refused."""
    imp = data.impressions.copy()
    skipped = dict(data.skipped)
    unlabeled = imp["labels"].isna()
    if unlabeled.any():
        skipped["unlabeled_impressions"] = int(unlabeled.sum())
        imp = imp[~unlabeled]
    splits = set(imp["split"])
    if "train" not in splits:
        raise ValueError(f"{data.name}: no training impressions (labelled splits: "
                         f"{sorted(splits) or 'none'}); give a MIND train folder as 'train'")

    def carve(n: int, name: str) -> None:
        train = imp[imp["split"] == "train"].sort_values(["time", "impression_id"], kind="stable")
        imp.loc[train.index[len(train) - min(n, len(train)):], "split"] = name

    if "test" not in splits:
        if "val" in splits:
            imp.loc[imp["split"] == "val", "split"] = "test"
            splits.discard("val")
        else:
            carve(n_test, "test")
    if "val" not in splits:
        carve(n_val, "val")
    counts = imp["split"].value_counts()
    if counts.get("train", 0) == 0:
        raise ValueError(f"{data.name}: no training impressions are left after holding out "
                         f"{counts.get('val', 0)} for validation and {counts.get('test', 0)} for "
                         "test; lower n_val / n_test or use more data")
    if counts.get("test", 0) < min_test:
        raise ValueError(f"{data.name}: only {counts.get('test', 0)} test impressions; fewer than "
                         f"min_test={min_test} cannot tell methods apart. Use more users or data")
    return ClickData(data.name, data.label, data.fields, data.items,
                     imp.reset_index(drop=True), skipped, data.source)


def with_fields(data: ClickData, fields: list[str] | None) -> ClickData:
    """The same data with items written from `fields` only, in that order (None: unchanged),
    e.g. ["title", "category"] for MIND as ONCE writes it."""
    if fields is None:
        return data
    fields = list(fields)
    missing = [f for f in fields if f not in data.items.columns]
    if not fields or missing:
        text = [c for c in data.items.columns if c != "item_id"]
        raise ValueError(f"ITEM_FIELDS={fields!r}: {data.name}'s items have no field(s) {missing} "
                         f"(they have {text}; the default writes {data.fields})" if missing else
                         f"ITEM_FIELDS is empty: name at least one of {data.fields}, or None")
    return ClickData(data.name, data.label, fields, data.items, data.impressions, data.skipped,
                     data.source)


def restrict_items(data: ClickData, *impressions: pd.DataFrame) -> ClickData:
    """Only the items these impressions mention (in histories or candidates): the catalogue a
    content encoder has to encode, and so the size of the layer cache."""
    used = {i for imp in impressions for col in ("history", "candidates") for ids in imp[col]
            for i in ids}
    items = data.items[data.items["item_id"].isin(used)].reset_index(drop=True)
    return ClickData(data.name, data.label, data.fields, items, data.impressions, data.skipped,
                     data.source)
