import json

import pandas as pd
import pytest

from conftest import make_rating_data
from llmrec.splits import build_processed, ensure_processed


def _check_invariants(p):
    ex = p.examples
    times = p.ratings.set_index(["user_idx", "position"])["timestamp"]
    items = p.ratings.set_index(["user_idx", "position"])["item_idx"]
    for k in range(p.history_len):
        has = ex[f"hist_item_{k}"] > 0
        sub = ex[has]
        src = list(zip(sub.user_idx, sub.position - k - 1))
        # the history is the same user's (k+1)-th previous rating: earlier in order and in time
        assert (items.loc[src].to_numpy() == sub[f"hist_item_{k}"].to_numpy()).all()
        assert (times.loc[src].to_numpy() <= sub.timestamp.to_numpy()).all()
        assert (sub.position > k).all()
        assert (ex.loc[~has, "hist_len"] <= k).all()


def test_leave_last_split_invariants(synthetic):
    p = build_processed(synthetic, history_len=3)
    _check_invariants(p)
    ex = p.examples
    per_user = ex.groupby("user_idx")
    assert (per_user["split"].apply(lambda s: (s == "test").sum()) == 1).all()
    assert (per_user["split"].apply(lambda s: (s == "val").sum()) == 1).all()
    last = ex.loc[per_user["position"].idxmax()]
    assert (last["split"] == "test").all()  # the test example is each user's latest rating
    train = ex[ex.split == "train"]
    assert train.position.max() < ex[ex.split == "val"].position.min() or (
        train.groupby("user_idx").position.max()
        < ex[ex.split == "val"].set_index("user_idx").position).all()
    _held_out_never_seen_in_training(p)
    assert set(p.train_ratings()["split"]) == {"train"}


def _held_out_never_seen_in_training(p):
    """No held-out rating, identified by what it is (user, item, time) rather than by the row
    it sits in, is a training target or appears in a training example's history."""
    r, ex = p.ratings, p.examples
    key = ["user_id", "item_id", "timestamp"]
    held = set(map(tuple, r.loc[r.split != "train", key].to_numpy().tolist()))
    assert held, "the split held nothing out"
    train = ex[ex.split == "train"]
    assert not held & set(map(tuple, train[key].to_numpy().tolist()))
    by_position = r.set_index(["user_idx", "position"])[key]
    for k in range(p.history_len):
        sub = train[train[f"hist_item_{k}"] > 0]
        seen = by_position.loc[list(zip(sub.user_idx, sub.position - k - 1))]
        assert not held & set(map(tuple, seen.to_numpy().tolist())), f"history slot {k}"


def test_global_time_split_puts_nothing_after_the_cut_in_training(synthetic):
    p = build_processed(synthetic, history_len=2, split="global_time", val_quantile=0.6,
                        test_quantile=0.8)
    _check_invariants(p)
    r = p.ratings
    assert r[r.split == "train"].timestamp.max() < r[r.split == "test"].timestamp.min()
    assert r[r.split == "train"].timestamp.max() < r[r.split == "val"].timestamp.min()
    _held_out_never_seen_in_training(p)


def test_real_data_has_one_test_and_one_val_example_per_user():
    p = ensure_processed("movielens-small", history_len=5, verbose=False)
    counts = p.examples.split.value_counts()
    assert counts["test"] == counts["val"] == 671
    assert counts["train"] == 100_004 - 3 * 671  # first ratings have no history
    _check_invariants(p)
    _held_out_never_seen_in_training(p)


def test_ties_are_ordered_deterministically():
    a = build_processed(make_rating_data(seed=3), history_len=4)
    b = build_processed(make_rating_data(seed=3), history_len=4)
    pd.testing.assert_frame_equal(a.examples, b.examples)


def test_empty_split_is_an_error_that_names_the_fix():
    tiny = make_rating_data(n_users=2, per_user=3)
    with pytest.raises(ValueError, match="test split is empty.*max_users"):
        build_processed(tiny, history_len=2, n_val=1, n_test=1, min_train=2)


@pytest.mark.parametrize("kwargs,match", [({"split": "random"}, "unknown split"),
                                          ({"history_len": 0}, "history_len"),
                                          ({"max_users": 0}, "max_users")])
def test_bad_split_parameters(synthetic, kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_processed(synthetic, **kwargs)


def test_max_users_samples_reproducibly():
    d = make_rating_data(n_users=30)
    a = build_processed(d, history_len=2, max_users=10, seed=1)
    b = build_processed(d, history_len=2, max_users=10, seed=1)
    c = build_processed(d, history_len=2, max_users=10, seed=2)
    assert a.n_users == 10
    assert set(a.ratings.user_id) == set(b.ratings.user_id) != set(c.ratings.user_id)


def _folder(cache):
    (folder,) = [f for f in (cache / "processed").iterdir() if not f.name.startswith(".")]
    return folder


def test_cache_is_reused_rebuilt_on_new_parameters_and_on_corruption(isolated_cache):
    first = ensure_processed("movielens-small", history_len=2, max_users=20, verbose=False)
    folder = _folder(isolated_cache)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["params"]["history_len"] == 2 and len(manifest["files"]) == 3
    stamp = (folder / "examples.parquet").stat().st_mtime_ns
    again = ensure_processed("movielens-small", history_len=2, max_users=20, verbose=False)
    assert (folder / "examples.parquet").stat().st_mtime_ns == stamp  # loaded, not rebuilt
    pd.testing.assert_frame_equal(first.examples, again.examples, check_dtype=False)

    with open(folder / "examples.parquet", "r+b") as f:  # flip bytes: a corrupt cache file
        f.seek(100)
        f.write(b"\x00" * 16)
    rebuilt = ensure_processed("movielens-small", history_len=2, max_users=20, verbose=False)
    assert len(rebuilt.examples) == len(first.examples)
    assert json.loads((folder / "manifest.json").read_text())["files"] == manifest["files"]

    for broken in ("null", "[]"):  # a manifest that is not an object: rebuilt, not an AttributeError
        (folder / "manifest.json").write_text(broken)
        assert len(ensure_processed("movielens-small", history_len=2, max_users=20, verbose=False).examples) \
            == len(first.examples)
        assert json.loads((folder / "manifest.json").read_text())["files"] == manifest["files"]

    ensure_processed("movielens-small", history_len=3, max_users=20, verbose=False)
    assert len([f for f in (isolated_cache / "processed").iterdir()]) == 2


def test_interrupted_cache_write_leaves_nothing_that_is_trusted(isolated_cache, monkeypatch):
    def crash(self, path, *a, **k):
        if str(path).endswith("examples.parquet"):
            raise KeyboardInterrupt
        return original(self, path, *a, **k)

    original = pd.DataFrame.to_parquet
    monkeypatch.setattr(pd.DataFrame, "to_parquet", crash)
    with pytest.raises(KeyboardInterrupt):
        ensure_processed("movielens-small", history_len=2, max_users=10, verbose=False)
    assert list((isolated_cache / "processed").iterdir()) == []  # no half-written folder


def test_unwritable_cache_names_the_variable(tmp_path, monkeypatch):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a folder should be")
    monkeypatch.setenv("LLMREC_DATA_DIR", str(blocked))
    with pytest.raises(PermissionError, match="LLMREC_DATA_DIR"):
        ensure_processed("movielens-small", history_len=2, max_users=5, verbose=False)


def _build_split(folder):
    import os

    os.environ["LLMREC_DATA_DIR"] = folder
    from llmrec.splits import ensure_processed

    return len(ensure_processed("movielens-small", max_users=40, seed=0).examples)


def test_processes_building_the_same_split_at_once_all_get_it(tmp_path):
    # two notebooks (or two users) on one empty data folder: the loser of the race uses the
    # winner's folder instead of failing with "Directory not empty"
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(6) as pool:
        sizes = pool.map(_build_split, [str(tmp_path)] * 6)
    assert len(set(sizes)) == 1 and sizes[0] > 0
    assert len(list((tmp_path / "processed").iterdir())) == 1  # one processed split
    leftovers = [p.name for p in tmp_path.rglob("*.part")] + [p.name for p in tmp_path.rglob("*.old")]
    assert leftovers == []


def test_edited_ratings_give_another_content_id_and_subset_id(tmp_path, monkeypatch):
    # the same files, the same rows, one rating edited in place: nothing stored may be reused
    import shutil

    from conftest import FIXTURES
    from llmrec.efficiency import subset_id

    monkeypatch.setenv("LLMREC_DATA_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "mine"
    shutil.copytree(FIXTURES / "custom", folder)
    paths = {"ratings_path": str(folder / "ratings.tsv"), "items_path": str(folder / "items.csv"), "genre_sep": " "}
    before = ensure_processed("custom", load_kwargs=paths, verbose=False)
    lines = (folder / "ratings.tsv").read_text().splitlines()
    user, item, rating, when = lines[-1].split("\t")
    lines[-1] = "\t".join([user, item, "1" if rating != "1" else "5", when])
    (folder / "ratings.tsv").write_text("\n".join(lines) + "\n")
    after = ensure_processed("custom", load_kwargs=paths, verbose=False)
    assert before.content_id != after.content_id
    assert len(before.examples) == len(after.examples)
    assert subset_id(before.examples) != subset_id(after.examples)
    assert subset_id(before.examples) == subset_id(before.examples.copy())
