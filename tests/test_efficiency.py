"""Notebook 05's machinery: nested subsets, resumable points, where a curve meets a target."""

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest

from conftest import make_rating_data
from llmrec.efficiency import (
    PointStore,
    baseline_point,
    check_fractions,
    curve_summary,
    matching_fraction,
    nested_subsets,
    points_table,
    scaled_schedule,
    subset_id,
    subset_size,
    trainer_curve,
)
from llmrec.splits import build_processed


@pytest.fixture
def pool():
    return pd.DataFrame({"x": np.arange(1000)}, index=np.arange(1000) * 3 + 7)


# --------------------------------------------------------------------------- subsets


def test_subsets_are_nested_sized_and_deterministic(pool):
    fractions = [0.01, 0.05, 0.2, 1.0]
    subsets = nested_subsets(pool, fractions, seed=3)
    assert [len(s) for s in subsets.values()] == [10, 50, 200, 1000]
    sets = [set(s.index) for s in subsets.values()]
    assert all(a < b for a, b in itertools.pairwise(sets))  # strictly nested
    assert sets[-1] == set(pool.index)
    again = nested_subsets(pool, fractions, seed=3)
    for f in fractions:
        assert subsets[f].index.equals(again[f].index)  # same rows, same order
    other = nested_subsets(pool, fractions, seed=4)
    assert not subsets[0.05].index.equals(other[0.05].index)


def test_a_subset_is_what_pandas_sample_draws_with_the_same_seed(pool):
    # so seed 0's subsets are prefixes of the samples notebooks 03 and 04 train on
    for n in (10, 600):
        expected = pool.sample(n, random_state=0).index
        assert nested_subsets(pool, [n / len(pool)], seed=0)[n / len(pool)].index.equals(expected)


def test_fractions_are_checked():
    assert check_fractions([1.0, 0.1, 0.1]) == [0.1, 1.0]
    for bad in ([], [0], [5], [-0.1, 0.5], ["a"], [float("nan")]):
        with pytest.raises(ValueError, match="FRACTIONS"):
            check_fractions(bad)
    assert subset_size(1000, 0.0001) == 1  # never an empty subset
    with pytest.raises(ValueError, match="no training examples"):
        nested_subsets(pd.DataFrame({"x": []}), [0.5], 0)


def test_subset_id_tells_subsets_apart(pool):
    a = nested_subsets(pool, [0.1], 0)[0.1]
    assert subset_id(a) == subset_id(a.copy())
    assert subset_id(a) != subset_id(nested_subsets(pool, [0.1], 1)[0.1])


def test_small_subsets_get_smaller_batches_and_more_epochs():
    assert scaled_schedule(100_000, 1024, 30, 500) == (1024, 30)  # unchanged at full size
    batch, epochs = scaled_schedule(98, 1024, 30, 500)
    assert batch == 16 and epochs == math.ceil(500 / 7)  # 7 batches of 16 per epoch
    assert scaled_schedule(98, 1024, 30, 0) == (16, 30)


# --------------------------------------------------------------------------- resumable points


def _result(rmse=1.0):
    return {"n_train": 10, "metrics": {"rmse": rmse, "mae": 0.8, "auc": 0.6}, "curve": []}


def test_a_rerun_skips_finished_points(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return _result()

    store = PointStore(tmp_path / "points", verbose=False)
    first = store.run("MF", 0.1, 0, {"lr": 1}, compute)
    second = PointStore(tmp_path / "points").run("MF", 0.1, 0, {"lr": 1}, compute)
    assert len(calls) == 1 and first == second
    assert first["metrics"]["rmse"] == 1.0 and first["seconds"] >= 0
    # another fraction, seed or method is another point
    store.run("MF", 0.2, 0, {"lr": 1}, compute)
    store.run("MF", 0.1, 1, {"lr": 1}, compute)
    store.run("LM: a/b", 0.1, 0, {"lr": 1}, compute)
    assert len(calls) == 4 and len(list((tmp_path / "points").glob("*.json"))) == 4


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing field", "nan", "settings",
                                    "empty"])
def test_a_corrupt_or_stale_point_is_recomputed(tmp_path, damage, capsys):
    store = PointStore(tmp_path, verbose=True)
    store.run("MF", 0.1, 0, {"lr": 1}, lambda: _result(1.0))
    path = store.path("MF", 0.1, 0)
    text = path.read_text()
    settings = {"lr": 1}
    if damage == "garbage":
        path.write_bytes(b"\x00\xff not json")
    elif damage == "truncated":
        path.write_text(text[: len(text) // 2])
    elif damage == "missing field":
        point = json.loads(text)
        del point["metrics"]
        path.write_text(json.dumps(point))
    elif damage == "nan":
        path.write_text(text.replace('"rmse": 1.0', '"rmse": NaN'))
    elif damage == "settings":
        settings = {"lr": 2}
    else:
        path.write_text("")
    point = store.run("MF", 0.1, 0, settings, lambda: _result(0.5))
    assert point["metrics"]["rmse"] == 0.5
    assert json.loads(path.read_text())["metrics"]["rmse"] == 0.5  # the file was replaced
    assert store.recomputed == 1
    assert "recomputing" in capsys.readouterr().out


def test_an_interrupted_point_leaves_nothing_behind(tmp_path):
    store = PointStore(tmp_path)

    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.run("MF", 0.1, 0, {}, interrupted)
    assert list(tmp_path.iterdir()) == []
    assert store.run("MF", 0.1, 0, {}, _result)["metrics"]["rmse"] == 1.0


def test_points_table_and_summary(tmp_path):
    store = PointStore(tmp_path, verbose=False)
    points = [store.run(m, f, s, {}, lambda r=r: _result(r))
              for m, r0 in (("MF", 1.0), ("LM", 2.0)) for f in (0.1, 1.0) for s, r in
              ((0, r0), (1, r0 + 0.2))]
    table = points_table(points)
    assert len(table) == 8 and {"method", "fraction", "seed", "rmse", "auc", "seconds"} <= set(table)
    summary = curve_summary(table).set_index(["method", "fraction"])
    assert summary.loc[("LM", 0.1), "rmse_mean"] == pytest.approx(2.1)
    assert summary.loc[("LM", 0.1), "rmse_std"] == pytest.approx(np.std([2.0, 2.2], ddof=1))
    assert summary.loc[("MF", 1.0), "seeds"] == 2


# --------------------------------------------------------------------------- matching fraction


def test_matching_fraction_interpolates_on_a_log_axis():
    # 1.2 at 1%, 0.9 at 10%: the target 1.0 is crossed two thirds of the way, in log fraction
    match = matching_fraction([0.001, 0.01, 0.1, 1.0], [1.3, 1.2, 0.9, 0.85], 1.0)
    assert match["fraction"] == 0.1
    assert match["interpolated"] == pytest.approx(10 ** (-2 + 2 / 3))


def test_matching_fraction_never_first_and_unsorted():
    assert matching_fraction([0.01, 0.1], [1.2, 1.1], 1.0) == {"fraction": None,
                                                                "interpolated": None}
    assert matching_fraction([0.1, 0.01], [0.9, 0.95], 1.0) == {"fraction": 0.01,
                                                                 "interpolated": 0.01}
    # a curve that dips below the target and comes back counts from its first crossing
    assert matching_fraction([0.01, 0.1, 1.0], [1.1, 0.99, 1.05], 1.0)["fraction"] == 0.1
    # exactly on the target counts as reaching it
    assert matching_fraction([0.01, 0.1], [1.1, 1.0], 1.0)["interpolated"] == pytest.approx(0.1)


def test_matching_fraction_for_a_higher_is_better_metric():
    match = matching_fraction([0.01, 0.1, 1.0], [0.6, 0.7, 0.8], 0.75, lower_is_better=False)
    assert match["fraction"] == 1.0
    assert match["interpolated"] == pytest.approx(10 ** -0.5)
    with pytest.raises(ValueError, match="same"):
        matching_fraction([0.1, 1.0], [1.0], 1.0)


# --------------------------------------------------------------------------- one point


def test_baseline_point_trains_on_the_subset_and_reports_a_curve():
    p = build_processed(make_rating_data(n_users=20, per_user=10), history_len=3)
    pool = p.split("train")
    subset = nested_subsets(pool, [0.5], seed=0)[0.5]
    point = baseline_point("MF", p, subset, p.split("test"), seed=0, epochs=3, min_steps=0)
    assert point["n_train"] == len(subset)
    assert set(point["metrics"]) == {"rmse", "mae", "auc"}
    seen = [c["examples_seen"] for c in point["curve"]]
    assert seen == sorted(seen) and seen[-1] <= 3 * len(subset) and len(seen) == point["epochs"]
    again = baseline_point("MF", p, subset, p.split("test"), seed=0, epochs=3, min_steps=0)
    assert again["metrics"] == point["metrics"]  # deterministic
    other = baseline_point("MF", p, pool, p.split("test"), seed=0, epochs=3, min_steps=0)
    assert other["metrics"] != point["metrics"]  # the subset is what it trained on


def test_trainer_curve_is_the_root_of_the_validation_mse():
    log = pd.DataFrame([{"step": 2, "loss": 1.5}, {"step": 2, "eval_loss": 1.21},
                        {"step": 4, "eval_loss": 0.81}])
    assert trainer_curve(log, 16) == [{"examples_seen": 32, "val_rmse": pytest.approx(1.1)},
                                      {"examples_seen": 64, "val_rmse": pytest.approx(0.9)}]
    assert trainer_curve(pd.DataFrame([{"step": 1, "loss": 1.0}]), 16) == []


def test_packed_point_trains_only_on_the_subsets_ratings_and_scores_the_test_slots(tmp_path):
    from llmrec.cache import compute_hidden
    from llmrec.efficiency import packed_point, packed_targets
    from llmrec.lm import load_lm
    from llmrec.packed import build_sequences

    p = build_processed(make_rating_data(n_users=12, n_items=30, per_user=12), history_len=3)
    lm = load_lm("tiny-llama", seed=0)
    seqs = build_sequences(p, lm.tokenizer, window=8)
    pool, test = p.split("train"), p.split("test")
    subsets = nested_subsets(pool, [0.3, 1.0], seed=0)
    small, every = (packed_targets(seqs, subsets[f]) for f in (0.3, 1.0))
    assert len(every) == len(seqs.targets("train"))  # the whole pool holds every target
    assert 0 < len(small) < len(every)
    in_subset = set(zip(subsets[0.3].user_idx, subsets[0.3].position))
    assert set(zip(small.user_idx, small.position)) <= in_subset  # nothing outside the subset
    assert (small.split == "train").all()
    inputs = compute_hidden(lm, 1, seqs.token_ids, batch_size=4)
    kw = dict(seed=0, output_dir=tmp_path, top_layers=1, min_steps=3, batch_size=4)
    test_slots = seqs.slots_for(test)
    point = packed_point(lm, inputs, small, seqs.targets("val"), test_slots, **kw)
    assert point["n_train"] == len(small) and point["steps"] == 3
    assert point["curve"] and point["curve"][-1]["examples_seen"] == round(3 * 4 * len(small) / point["sequences"])
    assert np.allclose(test_slots.rating.to_numpy(), test.rating.to_numpy())  # lined up with the examples
    again = packed_point(lm, inputs, small, seqs.targets("val"), test_slots, **kw)
    assert again["metrics"] == point["metrics"]  # deterministic
    other = packed_point(lm, inputs, every, seqs.targets("val"), test_slots, **kw)
    assert other["metrics"] != point["metrics"]  # the subset is what it trained on
    with pytest.raises(ValueError, match="LM_FRACTIONS"):
        packed_point(lm, inputs, small.iloc[:0], seqs.targets("val"), test_slots, **kw)
