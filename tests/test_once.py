"""ONCE/DIRE models: the cached content encoder equals the full one, caches are invalidated when
their inputs change, LoRA sits only on the tuned layers, and the recommender trains."""

import numpy as np
import pandas as pd
import pytest
import torch

from llmrec.cache import cached_hidden
from llmrec.clicks import click_task
from llmrec.lm import load_lm
from llmrec.once import (
    CachedItems,
    ClickConfig,
    ClickModel,
    LMEncoder,
    TokenItems,
    WordItems,
    build_encoder,
    evaluate,
    item_encodings,
    make_batch,
    parameter_groups,
    time_encoder_steps,
    train_click_model,
)


def _data(n_users=30, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        films = rng.choice(np.arange(1, 41), 14, replace=False)
        for t, f in enumerate(films):
            # users like the "comedy" half; a learnable signal in the text
            rows.append((f"u{u}", int(f), 5.0 if f % 2 else 2.0, 1000 + 10 * t + u))
    ratings = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    items = pd.DataFrame({"item_id": range(1, 41),
                          "title": [f"Film number {i}" + (" a long subtitle" * (i % 3))
                                    for i in range(1, 41)],
                          "genres": ["Comedy" if i % 2 else "Drama, War" for i in range(1, 41)]})
    return click_task(ratings, items, name="toy", label="movie", fields=["title", "genres"],
                      history_len=5, min_history=2, negatives=4, eval_negatives=4, seed=seed)


@pytest.fixture(scope="module")
def toy():
    return _data()


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-llama"])
@pytest.mark.parametrize("k", [0, 1, 2])
def test_cached_item_vectors_equal_the_full_forward(name, k, toy, tmp_path):
    lm = load_lm(name, seed=0)
    ids, enc = item_encodings(lm, toy)
    assert len({len(e) for e in enc}) > 1  # different lengths: padding is exercised
    hidden = cached_hidden(lm, k, enc, name="t", dtype=torch.float32, autocast=False,
                           folder=tmp_path, verbose=False)
    cached_items, token_items = CachedItems(ids, hidden), TokenItems(ids, enc,
                                                                     lm.tokenizer.pad_token_id or 0)
    torch.manual_seed(0)
    cached = LMEncoder(lm, k, dim=8)
    full = LMEncoder(lm, k, dim=8, full=True)
    full.load_state_dict(cached.state_dict(), strict=False)  # same top layers, pooling, projection
    cached.eval(), full.eval()
    rows = torch.arange(len(ids))
    with torch.no_grad():
        a = cached(**cached_items.batch(rows))
        b = full(**token_items.batch(rows))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_cache_is_rebuilt_when_layer_text_or_model_change(toy, tmp_path):
    bert = load_lm("tiny-bert", seed=0)
    _, enc = item_encodings(bert, toy)
    cached_hidden(bert, 1, enc, name="c", folder=tmp_path, verbose=False)
    cached_hidden(bert, 1, enc, name="c", folder=tmp_path, verbose=False)  # reused
    assert len(list(tmp_path.iterdir())) == 1
    cached_hidden(bert, 2, enc, name="c", folder=tmp_path, verbose=False)  # another layer
    changed = [e[:-2] + e[-1:] if i == 0 else e for i, e in enumerate(enc)]  # another text
    cached_hidden(bert, 1, changed, name="c", folder=tmp_path, verbose=False)
    other = load_lm("tiny-bert", seed=1)  # another model (other weights)
    cached_hidden(other, 1, enc, name="c", folder=tmp_path, verbose=False)
    assert len(list(tmp_path.iterdir())) == 4


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-llama"])
def test_lora_only_on_the_tuned_layers_and_the_loaded_model_is_untouched(name):
    lm = load_lm(name, seed=0)
    before = {n: p.detach().clone() for n, p in lm.model.named_parameters()}
    enc = LMEncoder(lm, 1, dim=8, lora=True, lora_r=4)
    trainable = [n for n, p in enc.named_parameters() if p.requires_grad]
    assert any("lora_A" in n for n in trainable)
    assert all("lora_" in n for n in trainable if n.startswith("top."))
    assert {n.split(".")[0] for n in trainable} == {"top", "pool", "proj"}
    n_layers = {n.split("layer")[1].split(".")[1] if "layer." in n else None
                for n in trainable if "lora_" in n}
    assert len(n_layers) == 1  # adapters on one (the top) layer only
    frozen = LMEncoder(lm, 0, dim=8)
    assert {n.split(".")[0] for n, p in frozen.named_parameters() if p.requires_grad} == \
        {"pool", "proj"}
    for p in enc.parameters():  # a training step through the encoder changes only its copies
        p.data.add_(0.1)
    for n, p in lm.model.named_parameters():
        assert torch.equal(p, before[n]), n


def test_make_batch_indexes_unique_items_and_pads_histories(toy):
    words = WordItems(toy, min_count=1)
    index = {i: k for k, i in enumerate(words.ids)}
    part = toy.split("train").iloc[:4].copy()
    part.iloc[0, part.columns.get_loc("history")] = []  # an empty history
    inputs, history, cands = make_batch(part, words, index, history_len=5)
    assert cands.shape == (4, 5) and history.shape[0] == 4
    assert (history[0] == -1).all()
    unique = inputs["tokens"]
    assert len(unique) == len({i for h, c in zip(part.history, part.candidates) for i in h + c})
    # positions point back at the right items
    row = part.iloc[1]
    for pos, item in zip(cands[1].tolist(), row.candidates):
        assert torch.equal(unique[pos], words.batch(torch.tensor([index[item]]))["tokens"][0])
    model = ClickModel(build_encoder("NAML", words, dim=8), 8)
    scores = model(inputs, history, cands)
    assert scores.shape == (4, 5) and torch.isfinite(scores).all()


@pytest.mark.parametrize("kind", ["NAML", "NRMS"])
def test_original_encoders_learn_and_are_deterministic(toy, kind):
    words = WordItems(toy, min_count=1)
    train, val, test = toy.split("train"), toy.split("val"), toy.split("test")
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        model = ClickModel(build_encoder(kind, words, dim=16), 16)
        history = train_click_model(model, words, train, val,
                                    ClickConfig(epochs=4, batch_size=16, lr=3e-3, history_len=5,
                                                patience=4))
        results.append(evaluate(model, words, test, 5))
    assert results[0] == results[1]
    assert results[0]["auc"] > 0.6  # the liked half is written in the text ("Comedy")
    assert list(history.columns) == ["epoch", "step", "examples_seen", "train_loss", "val_auc",
                                     "seconds"]


def test_dire_trains_from_the_cache_and_timing_runs(toy, tmp_path):
    lm = load_lm("tiny-bert", seed=0)
    ids, enc = item_encodings(lm, toy)
    items = CachedItems(ids, cached_hidden(lm, 1, enc, name="d", folder=tmp_path, verbose=False,
                                           dtype=torch.float32))
    model = ClickModel(build_encoder("DIRE", items, lm=lm, dim=8, top_layers=1), 8)
    model.eval()
    with torch.no_grad():  # encoding in length-sorted chunks changes nothing but the padding
        every = items.batch(torch.arange(len(items)))
        torch.testing.assert_close(model.encode_items(every, chunk=7), model.encoder(**every),
                                   atol=1e-5, rtol=1e-5)
    history = train_click_model(model, items, toy.split("train"), toy.split("val"),
                                ClickConfig(epochs=1, batch_size=16, max_steps=2, history_len=5))
    assert history.step.iloc[-1] == 2
    metrics = evaluate(model, items, toy.split("test"), 5)
    assert all(np.isfinite(v) for v in metrics.values())
    assert len(times := time_encoder_steps(model.encoder, items, n_items=8, steps=2)) == 2 and min(times) > 0
    with pytest.raises(ValueError, match="unknown content encoder"):
        build_encoder("Fastformer", items)
    with pytest.raises(ValueError, match="needs the loaded language model"):
        build_encoder("DIRE", items)


@pytest.mark.parametrize("lora", [False, True])
def test_the_language_models_own_weights_get_their_own_learning_rate(toy, lora):
    lm = load_lm("tiny-llama", seed=0)
    ids, enc = item_encodings(lm, toy)
    items = TokenItems(ids, enc, lm.tokenizer.pad_token_id or 0)
    model = ClickModel(build_encoder("DIRE", items, lm=lm, dim=8, top_layers=1, lora=lora, full=True), 8)
    trained = [p for p in model.parameters() if p.requires_grad]
    assert len(parameter_groups(model)) == 1 and parameter_groups(model)[0]["params"] == trained
    groups = parameter_groups(model, lm_lr=1e-5)
    top_own = [p for n, p in model.encoder.top.named_parameters() if p.requires_grad and "lora_" not in n]
    if lora:  # the tuned layers' own weights are frozen: LoRA adapters train at the main rate
        assert top_own == [] and len(groups) == 1
    else:
        assert len(groups) == 2 and groups[1]["lr"] == 1e-5 and groups[1]["params"] == top_own
        assert len(groups[0]["params"]) + len(top_own) == len(trained)
        assert any(p is model.encoder.proj.weight for p in groups[0]["params"])
