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


def _text_task(n_users=60, n_items=40, dim_text=6, seed=0):
    # ratings that depend on a text feature of the item; half the items never appear in training
    rng = np.random.default_rng(seed)
    text = torch.tensor(rng.normal(size=(n_items + 1, dim_text)), dtype=torch.float32)
    text[0] = 0
    quality = 3 + 0.8 * text[:, 0].numpy()
    users = np.repeat(np.arange(n_users), 12)
    items = rng.integers(1, n_items + 1, len(users))
    ratings = np.clip(quality[items] + rng.normal(0, 0.3, len(users)), 1, 5)
    seen = items <= n_items // 2
    def tensors(mask):
        return {"user": torch.as_tensor(users[mask]), "item": torch.as_tensor(items[mask]),
                "target": torch.as_tensor(ratings[mask], dtype=torch.float32)}
    return text, tensors(seen), tensors(~seen)


def test_text_aware_mf_starts_as_mf_and_uses_item_text_for_items_it_never_saw():
    from llmrec.baselines import BiasedMF, TextAwareMF
    from llmrec.training import predict, train_regressor
    text, train, unseen = _text_task()
    torch.manual_seed(0)
    plain = BiasedMF(60, 40, dim=4, reg=0.5, global_mean=3.0)
    torch.manual_seed(0)
    aware = TextAwareMF(60, 40, item_text=text, dim=4, reg=0.5, global_mean=3.0)
    batch = {k: v[:9] for k, v in train.items()}
    torch.testing.assert_close(aware(batch), plain(batch))  # zero-initialised text projections
    config = TrainConfig(epochs=60, batch_size=64, lr=0.03, patience=60, seed=0)
    errors = {}
    for name, model in (("MF", plain), ("text-aware MF", aware)):
        train_regressor(model, train, train, config)
        errors[name] = rmse(unseen["target"].numpy(), predict(model, unseen))
    # MF knows nothing of an unseen item (the global mean); its text says whether it is good (the
    # strong L2 keeps the item-free parameters from absorbing what the text explains)
    assert errors["text-aware MF"] < 0.6 * errors["MF"], errors


def test_text_aware_mf_is_built_like_the_other_baselines_and_refuses_wrong_text(synthetic):
    p = build_processed(synthetic, history_len=2)
    text = torch.randn(p.n_items + 1, 5)
    model = build_model("Text-aware MF", p, {"dim": 4, "item_text": text})
    assert model(to_tensors(p, p.split("test"))).shape == (len(p.split("test")),)
    with pytest.raises(ValueError, match="item_text"):
        build_model("Text-aware MF", p, {"dim": 4})
    with pytest.raises(ValueError, match="one row per item_idx"):
        build_model("Text-aware MF", p, {"dim": 4, "item_text": text[:3]})


def test_item_texts_line_up_with_item_idx(synthetic):
    from llmrec.prompts import item_texts
    p = build_processed(synthetic, history_len=2)
    texts = item_texts(p)
    assert len(texts) == p.n_items + 1 and texts[0] == ""
    for row in p.items.itertuples():
        text = texts[row.item_idx]
        assert text.startswith(f"{row.title} ({row.year})"), text
        assert all(g in text for g in row.genres.split("|")), text
