import numpy as np
import pandas as pd
import pytest

from llmrec.data import RatingData, _finish

FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test writes its caches to a temporary folder, never to data/processed."""
    monkeypatch.setenv("LLMREC_DATA_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def make_rating_data(n_users=12, n_items=15, per_user=8, seed=0, ties=True) -> RatingData:
    """A small synthetic data set with a known structure (and same-second ties)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        items = rng.choice(n_items, size=per_user, replace=False)
        t0 = 1_000_000 + int(rng.integers(0, 10_000))
        for k, i in enumerate(items):
            t = t0 + (k // 2 if ties else k) * 60  # pairs of ratings share a timestamp
            rows.append((f"u{u}", int(i) + 1, float(rng.integers(1, 6)), t))
    ratings = pd.DataFrame(rows, columns=["user_id", "item_id", "raw_rating", "timestamp"])
    items = pd.DataFrame({"item_id": np.arange(1, n_items + 1),
                          "title": [f"Film {i}" for i in range(1, n_items + 1)],
                          "year": [1990 + i for i in range(n_items)],
                          "genres": ["Drama|Comedy" if i % 2 else "Action" for i in range(n_items)]})
    return _finish("synthetic", ratings, items, "stars", "synthetic-sha")


@pytest.fixture
def synthetic():
    return make_rating_data()
