import numpy as np
import pandas as pd
import pytest
import torch

from llmrec.baselines import (
    BASELINE_MODELS,
    build_model,
    fit_baseline,
    genre_matrix,
    heuristic_predictions,
    predict_baseline,
    to_tensors,
)
from llmrec.metrics import rmse
from llmrec.splits import build_processed
from llmrec.training import TrainConfig, pick_device


def test_heuristics_by_hand(synthetic):
    p = build_processed(synthetic, history_len=2)
    train = p.train_ratings()
    test = p.split("test")
    preds = heuristic_predictions(p, test)
    row = test.iloc[0]
    assert preds["global average"][0] == pytest.approx(train.rating.mean())
    assert preds["user average"][0] == pytest.approx(train[train.user_idx == row.user_idx].rating.mean())
    seen = train[train.item_idx == row.item_idx].rating
    expected = seen.mean() if len(seen) else train.rating.mean()
    assert preds["item average"][0] == pytest.approx(expected)


def test_genre_matrix_is_multi_hot(synthetic):
    p = build_processed(synthetic, history_len=2)
    mat, names = genre_matrix(p.items)
    assert names == ["Action", "Comedy", "Drama"]
    assert mat[0].sum() == 0  # padding row
    drama_comedy = p.items[p.items.genres == "Drama|Comedy"].item_idx.iloc[0]
    assert mat[drama_comedy].tolist() == [0, 1, 1]


@pytest.mark.parametrize("name", BASELINE_MODELS)
def test_model_output_shapes(synthetic, name):
    p = build_processed(synthetic, history_len=3)
    torch.manual_seed(0)
    model = build_model(name, p, {"dim": 8, "heads": 2} if name == "Transformer+MLP" else {})
    batch = to_tensors(p, p.split("train").iloc[:7])
    out = model(batch)
    assert out.shape == (7,) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", BASELINE_MODELS)
def test_same_seed_same_predictions(synthetic, name):
    p = build_processed(synthetic, history_len=3)
    cfg = TrainConfig(epochs=2, batch_size=16, seed=5)
    params = {"dim": 8, "heads": 2} if name == "Transformer+MLP" else {}
    runs = [predict_baseline(fit_baseline(name, p, cfg, params)[0], p, p.split("test"))
            for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])


def test_mf_learns_low_rank_structure_that_averages_cannot():
    # ratings from a rank-1 model (user taste x item type) that cancels out in every average
    rng = np.random.default_rng(0)
    users, items = 60, 40
    taste, kind = rng.choice([-1, 1], users), rng.choice([-1, 1], items)
    rows = [(f"u{u}", i + 1, 3 + taste[u] * kind[i], t)
            for u in range(users) for t, i in enumerate(rng.permutation(items)[:25])]
    from llmrec.data import _finish
    d = _finish("rank1", pd.DataFrame(rows, columns=["user_id", "item_id", "raw_rating", "timestamp"]),
                pd.DataFrame({"item_id": range(1, items + 1), "title": "x"}), "stars", "-")
    p = build_processed(d, history_len=2)
    test = p.split("test")
    model, _ = fit_baseline("MF", p, TrainConfig(epochs=60, lr=0.05, batch_size=256, patience=10),
                                 {"dim": 2, "reg": 0.0})
    mf = rmse(test.rating, predict_baseline(model, p, test))
    best_average = min(rmse(test.rating, v) for v in heuristic_predictions(p, test).values())
    assert mf < 0.5 < best_average


def test_unknown_baseline_and_device_are_named(synthetic):
    p = build_processed(synthetic, history_len=2)
    with pytest.raises(ValueError, match="unknown baseline 'SVD'"):
        build_model("SVD", p)
    with pytest.raises(ValueError, match="unknown DEVICE"):
        pick_device("tpu")
