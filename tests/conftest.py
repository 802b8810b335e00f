import shutil

import numpy as np
import pandas as pd
import pytest

from llmrec.course.runner import run_course
from llmrec.data import RatingData, _finish
from llmrec.paths import runs_dir

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


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """Every notebook, 00-07, through papermill with the smoke preset, once per test session
    (tests/test_notebooks.py checks what they wrote, tests/test_site.py builds the site from them)."""
    # the kernels inherit this: the run's caches stay out of the checkout, like every test's
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMREC_DATA_DIR", str(tmp_path_factory.mktemp("cache")))
        shutil.rmtree(runs_dir("smoke") / "05_points", ignore_errors=True)  # start 05 from scratch
        yield run_course("smoke", only=["00", "01", "02", "03", "04", "05", "06", "07"])
