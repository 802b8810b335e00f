"""The packed formulation (llmrec.packed): one causal sequence per user, every rating a target.

What must hold for it to be the same model as Kang et al.'s per-prompt one, and leak-free:
the state at a slot is the state of the same text run alone; a later rating changes no earlier
prediction; validation and test ratings never enter the loss; no sequence mixes users; a
target's context holds only earlier ratings, under both splits."""

import itertools

import numpy as np
import pytest
import torch

from conftest import make_rating_data
from llmrec.baselines import heuristic_predictions
from llmrec.cache import compute_hidden
from llmrec.lm import RatingModel, load_lm, rating_token_ids
from llmrec.packed import (
    PackedDataset,
    bias_offsets,
    build_packed_model,
    build_sequences,
    collate_packed,
    predict_packed,
)
from llmrec.precision import PrecisionChoice
from llmrec.splits import build_processed
from llmrec.training import train_with_trainer


@pytest.fixture(scope="module")
def lm():
    return load_lm("tiny-llama", seed=0)


def processed_of(data=None, split="leave_last", **kwargs):
    return build_processed(data or make_rating_data(n_users=10, n_items=30, per_user=12),
                           history_len=5, split=split, **kwargs)


def packed_inputs(lm, seqs, top_layers=2):
    return compute_hidden(lm, top_layers, seqs.token_ids, batch_size=4)


def test_every_rating_gets_one_slot_before_its_digit(lm):
    p = processed_of()
    seqs = build_sequences(p, lm.tokenizer, window=None)
    ids = rating_token_ids(lm.tokenizer)
    assert len(seqs.slots) == len(p.ratings)  # no window, no chunk: every rating once
    for row in seqs.slots.itertuples():
        assert seqs.token_ids[row.seq][row.slot + 1] == ids[int(row.rating) - 1]
    assert seqs.texts[0].startswith("A user's item ratings, oldest first")
    assert "Film" in seqs.texts[0].splitlines()[1]


def test_state_at_a_slot_equals_the_same_text_run_alone(lm):
    """Packed: one pass over the sequence, read at each slot. Per prompt: the text up to the slot
    as its own input, read at its last token (RatingModel, the whole model, no cache)."""
    p = processed_of()
    seqs = build_sequences(p, lm.tokenizer, window=6)
    packed = build_packed_model(lm, "classification", top_layers=2)
    alone = RatingModel(lm, "classification")  # the whole model: no cache involved
    slots = seqs.slots[seqs.slots.seq < 3]
    ds = PackedDataset(packed_inputs(lm, seqs), slots)
    _, scores = predict_packed(packed, ds)
    with torch.no_grad():
        for (row, got) in zip(slots.itertuples(), scores):
            prefix = torch.tensor([seqs.token_ids[row.seq][:row.slot + 1]])
            want = alone(input_ids=prefix, attention_mask=torch.ones_like(prefix))["logits"][0]
            torch.testing.assert_close(torch.as_tensor(got), want, atol=1e-4, rtol=1e-4)


def edited_ratings(p, rows, value):
    """A copy of `p` whose ratings at `rows` (a boolean mask over p.ratings) are `value(old)`."""
    edited = p.ratings.copy()
    edited.loc[rows, "rating"] = value(edited.loc[rows, "rating"])
    assert (edited.rating != p.ratings.rating).any(), "the edit must change some rating"
    return type(p)(edited, p.items, p.examples, p.manifest)


@pytest.mark.parametrize("split,head,max_lines", [("leave_last", "classification", 64),
                                                  ("global_time", "regression", 64),
                                                  ("leave_last", "regression", 5)])
def test_a_later_rating_changes_no_earlier_prediction(lm, split, head, max_lines):
    """Whatever the split, the head (regression with its bias offsets) or the chunking."""
    p = processed_of(split=split)
    model = build_packed_model(lm, head, top_layers=2)
    torch.nn.init.normal_(model.score.weight)  # a regression head starts at zero: make it read

    def predictions(processed):
        seqs = build_sequences(processed, lm.tokenizer, window=None, max_lines=max_lines, overlap=2)
        offsets = bias_offsets(processed, seqs.slots) if head == "regression" else None
        ds = PackedDataset(packed_inputs(lm, seqs), seqs.slots, offsets=offsets)
        return seqs, predict_packed(model, ds)[0]

    seqs, before = predictions(p)
    held = seqs.slots[(seqs.slots.split != "train") & seqs.slots.owned].groupby("user_idx").size()
    user = int(held[held >= 2].index[0])  # a user with a held-out rating before another one
    lines = seqs.slots[(seqs.slots.user_idx == user) & seqs.slots.owned]
    # classification: a training rating in the middle; regression: the first held-out rating
    # (a training rating also moves the user's bias, which every slot's offset reads)
    changed = lines.iloc[len(lines) // 2] if head == "classification" else \
        lines[lines.split != "train"].iloc[0]
    at = ((p.ratings.user_idx == user) & (p.ratings.position == changed.position)).to_numpy()
    _, after = predictions(edited_ratings(p, at, lambda r: 6 - r if (r != 3).all() else r + 2))
    mine = (seqs.slots.user_idx == user).to_numpy()
    earlier = mine & (seqs.slots.position <= changed.position).to_numpy()  # its own slot too
    later = mine & (seqs.slots.position > changed.position).to_numpy()
    np.testing.assert_allclose(after[earlier], before[earlier], atol=1e-6)
    np.testing.assert_allclose(after[~mine], before[~mine], atol=1e-6)
    assert np.abs(after[later] - before[later]).max() > 1e-6  # the test can see a change


def test_validation_and_test_never_enter_the_loss(lm):
    p = processed_of()
    seqs = build_sequences(p, lm.tokenizer, window=8, min_context=2)
    train = seqs.targets("train")
    assert set(train["split"]) == {"train"} and len(train) > 0
    assert (train.groupby("seq")["line"].min() >= 2).all()

    def loss_and_grads(processed):
        s = build_sequences(processed, lm.tokenizer, window=8, min_context=2)
        torch.manual_seed(0)
        model = build_packed_model(lm, "classification", top_layers=2)
        ds = PackedDataset(packed_inputs(lm, s), s.targets("train"))
        batch = collate_packed([ds[i] for i in range(len(ds))])
        loss = model(**batch)["loss"]
        loss.backward()
        return loss.item(), [q.grad.clone() for q in model.parameters() if q.grad is not None]

    held_out = (p.ratings.split != "train").to_numpy()
    a, ga = loss_and_grads(p)
    b, gb = loss_and_grads(edited_ratings(p, held_out, lambda r: 6 - r))
    assert a == pytest.approx(b, abs=1e-7)
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y)
    # and the training pass never computes the held-out lines: their token states are not fed
    ds = PackedDataset(packed_inputs(lm, seqs), train)
    held = seqs.slots[seqs.slots.split != "train"].groupby("seq").slot.min()
    for i, (seq, *_rest) in enumerate(ds.items):
        if seq in held.index:
            assert len(ds[i]["inputs_embeds"]) <= held[seq] - 1  # ends before the held-out line


def test_no_sequence_mixes_users_and_lines_are_the_users_ratings(lm):
    p = processed_of()
    seqs = build_sequences(p, lm.tokenizer, window=4, max_lines=5, overlap=2)
    assert (seqs.slots.groupby("seq")["user_idx"].nunique() == 1).all()
    titles = dict(zip(p.items.item_idx, p.items.title))
    for row in seqs.slots.itertuples():
        line = seqs.texts[row.seq].splitlines()[1 + row.line]
        assert line.startswith(titles[row.item_idx]) and line.endswith(f": {int(row.rating)}")
        rated = p.ratings[(p.ratings.user_idx == row.user_idx) & (p.ratings.position == row.position)]
        assert rated.item_idx.item() == row.item_idx and rated.rating.item() == row.rating


@pytest.mark.parametrize("split", ["leave_last", "global_time"])
def test_a_targets_context_holds_only_earlier_ratings(lm, split):
    p = processed_of(split=split)
    seqs = build_sequences(p, lm.tokenizer, window=5, max_lines=6, overlap=2)
    s = seqs.slots
    for seq, g in s.groupby("seq"):
        g = g.sort_values("line")
        assert (np.diff(g.position) > 0).all() and (np.diff(g.timestamp) >= 0).all()
        held_out = (g.split != "train").to_numpy()
        assert (np.diff(held_out.astype(int)) >= 0).all()  # training lines first, then held-out
    # every held-out rating is scored exactly once; every training target once at most
    for name in ("val", "test"):
        want = p.ratings[p.ratings.split == name][["user_idx", "position"]]
        got = seqs.targets(name)[["user_idx", "position"]]
        assert sorted(map(tuple, got.to_numpy())) == sorted(map(tuple, want.to_numpy()))
    assert not seqs.targets("train").duplicated(["user_idx", "position"]).any()


def test_long_histories_are_chunked_with_context(lm):
    p = processed_of(make_rating_data(n_users=3, n_items=40, per_user=30))
    seqs = build_sequences(p, lm.tokenizer, window=None, max_lines=10, overlap=3, min_context=4)
    assert len(seqs) > 3
    owned = seqs.slots[seqs.slots.owned]
    assert len(owned) == len(p.ratings)
    assert not owned.duplicated(["user_idx", "position"]).any()
    for user, g in seqs.slots.groupby("user_idx"):
        chunks = sorted(g.seq.unique())
        for a, b in itertools.pairwise(chunks):  # each chunk opens with the 3 lines before it
            prev, cur = g[g.seq == a].sort_values("line"), g[g.seq == b].sort_values("line")
            assert cur.position.iloc[:3].tolist() == prev.position.iloc[-3:].tolist()
            assert not cur.owned.iloc[:3].any() and cur.owned.iloc[3:].all()
    # a target needs min_context lines that its own sequence shows
    assert (seqs.targets("train").line >= 4).all()


def test_bad_parameters_are_refused(lm):
    p = processed_of()
    for kwargs, match in [({"window": 0}, "window"), ({"max_lines": 4, "overlap": 4}, "overlap"),
                          ({"line": "{rating} stars for {title}"}, "must end with"),
                          ({"line": "{title}"}, "must contain")]:
        with pytest.raises(ValueError, match=match):
            build_sequences(p, lm.tokenizer, **kwargs)
    with pytest.raises(ValueError, match="decoder-only"):
        build_packed_model(load_lm("tiny-bert"), "classification", top_layers=1)


def test_bias_offsets_are_the_heuristic_and_leave_a_training_rating_out(lm):
    p = processed_of()
    seqs = build_sequences(p, lm.tokenizer, window=None)
    s = seqs.slots
    off = bias_offsets(p, s)
    test = s[s.split == "test"]
    examples = p.examples.set_index(["user_idx", "position"]).loc[
        list(zip(test.user_idx, test.position))].reset_index()
    np.testing.assert_allclose(off[(s.split == "test").to_numpy()],
                               heuristic_predictions(p, examples)["user + item bias"], atol=1e-9)
    # a training slot's offset is the heuristic refitted without that rating, exactly
    train_at = np.flatnonzero((s.split == "train").to_numpy())
    for i in train_at[[0, 7, len(train_at) // 2, -1]]:
        row = ((p.ratings.user_idx == s.user_idx[i]) & (p.ratings.position == s.position[i])).to_numpy()
        without = p.ratings.copy()
        without.loc[row, "split"] = "left out"
        refit = heuristic_predictions(type(p)(without, p.items, p.examples, p.manifest), s.iloc[[i]])
        assert off[i] == pytest.approx(refit["user + item bias"][0], abs=1e-9)


def test_trains_through_the_kits_trainer_and_predicts_every_test_user(lm, tmp_path):
    p = processed_of()
    seqs = build_sequences(p, lm.tokenizer, window=8)
    hidden = packed_inputs(lm, seqs)
    train = PackedDataset(hidden, seqs.targets("train"))
    val = PackedDataset(hidden, seqs.targets("val"))
    model = build_packed_model(lm, "regression", top_layers=2)
    _trainer, log = train_with_trainer(model, train, val, collate_packed, output_dir=tmp_path,
                                      epochs=2, lr=1e-3, batch_size=4, eval_points=2,
                                      prediction_loss_only=True)
    assert log["eval_loss"].notna().sum() >= 2
    test = seqs.targets("test")
    pred, _ = predict_packed(model, PackedDataset(hidden, test))
    assert len(pred) == len(p.split("test")) == len(test) and np.isfinite(pred).all()
    # the order of the predictions is the order of the slots asked for, whatever the batching
    shuffled = test.sample(frac=1, random_state=1)
    pred2, _ = predict_packed(model, PackedDataset(hidden, shuffled), collate_packed, batch_size=3)
    np.testing.assert_allclose(pred2, pd_series(pred, test.index).loc[shuffled.index], atol=1e-6)


def pd_series(values, index):
    import pandas as pd

    return pd.Series(values, index=index)


def test_slots_line_up_with_the_examples(lm):
    p = processed_of()
    seqs = build_sequences(p, lm.tokenizer, window=4)
    test = p.split("test").sample(frac=1, random_state=0)
    slots = seqs.slots_for(test)
    assert slots.user_idx.tolist() == test.user_idx.tolist()
    assert slots.rating.tolist() == test.rating.tolist()
    with pytest.raises(ValueError, match="no slot"):
        build_sequences(p, lm.tokenizer, window=4, users=[0]).slots_for(test)


def test_formulation_is_checked_before_any_work():
    from llmrec.packed import check_formulation

    assert check_formulation("packed", "smollm2-135m") == "packed"
    assert check_formulation("prompt", "flan-t5-base") == "prompt"
    with pytest.raises(ValueError, match="FORMULATION must be one of"):
        check_formulation("pack", "smollm2-135m")
    with pytest.raises(ValueError, match="encoder-decoder.*FORMULATION = 'prompt'"):
        check_formulation("packed", "flan-t5-base")


def test_mf_offsets_are_cross_fitted_a_training_rating_never_reaches_its_own_offset(lm):
    from llmrec.baselines import BASELINE_SETTINGS, fit_baseline, predict_baseline
    from llmrec.packed import mf_offsets
    from llmrec.training import TrainConfig

    p = processed_of()
    s = build_sequences(p, lm.tokenizer, window=None).slots
    off, full = mf_offsets(p, s, folds=3, max_steps=30)
    # validation and test slots: the MF trained on every training rating (the tables' MF row)
    config = TrainConfig(seed=0, max_steps=30, **BASELINE_SETTINGS["MF"]["train"])
    mf, _ = fit_baseline("MF", p, config, BASELINE_SETTINGS["MF"]["model"])
    held = (s.split != "train").to_numpy()
    np.testing.assert_allclose(off[held], predict_baseline(mf, p, s[held]), atol=1e-6)
    # a training slot: change its rating, and its offset does not move (its fold's MF never saw it),
    # while the MF on every rating does
    train_at = np.flatnonzero((s.split == "train").to_numpy())
    for i in train_at[[0, len(train_at) // 2, -1]]:
        row = ((p.ratings.user_idx == s.user_idx[i]) & (p.ratings.position == s.position[i])).to_numpy()
        changed = p.ratings.copy()
        changed.loc[row, "rating"] = 6.0 - changed.loc[row, "rating"] if s.rating[i] != 3 else 5.0
        q = type(p)(changed, p.items, p.examples, p.manifest)
        off2, full2 = mf_offsets(q, s, folds=3, max_steps=30)
        assert off2[i] == pytest.approx(off[i], abs=1e-6)
        assert not np.allclose(off2[held], off[held])
    assert not np.allclose(off[~held], predict_baseline(mf, p, s[~held]))  # not the in-sample MF


def test_predictions_come_back_in_the_order_of_the_slots_whatever_the_batching(lm):
    from llmrec.training import predict_dataset

    p = processed_of()
    seqs = build_sequences(p, lm.tokenizer, window=None)
    hidden = packed_inputs(lm, seqs)
    model = build_packed_model(lm, "classification", top_layers=2)
    slots = seqs.slots.sample(frac=1.0, random_state=1)  # rows in no particular order
    data = PackedDataset(hidden, slots)
    assert len(set(data.lengths())) > 1  # sequences of several lengths: sorting moves them
    # each slot alone: a dataset of that one row, so no ordering of the library is involved
    expected = np.array([predict_dataset(model, PackedDataset(hidden, slots.iloc[[i]]), collate_packed,
                                         batch_size=1)[0][0] for i in range(len(slots))])
    pred, _ = predict_packed(model, data, batch_size=3)
    np.testing.assert_allclose(pred, expected, atol=1e-5)
    ids = rating_token_ids(lm.tokenizer)
    assert np.array_equal(slots.rating.to_numpy(), [{i: r + 1 for r, i in enumerate(ids)}[seqs.token_ids[s][k + 1]]
                                                     for s, k in zip(slots.seq, slots.slot)])


def test_the_chosen_bf16_trains_and_predicts_on_the_cpu_close_to_fp32(lm, tmp_path):
    # PRECISION's choice runs the Trainer's bf16 (an autocast on the CPU) and the predictions;
    # the same seed in fp32 and bf16 must land close, not far apart
    p = processed_of()
    seqs = build_sequences(p, lm.tokenizer, window=8)
    hidden = packed_inputs(lm, seqs)
    train, val = PackedDataset(hidden, seqs.targets("train")), PackedDataset(hidden, seqs.targets("val"))
    test = PackedDataset(hidden, seqs.targets("test"))
    preds = {}
    for precision in ("fp32", "bf16"):
        choice = PrecisionChoice(precision, "as asked")
        model = build_packed_model(lm, "regression", top_layers=2)
        torch.manual_seed(0)
        _, log = train_with_trainer(model, train, val, collate_packed, output_dir=tmp_path / precision,
                                    epochs=1, lr=1e-3, batch_size=4, eval_points=2, precision=choice,
                                    prediction_loss_only=True)
        assert np.isfinite(log["eval_loss"].dropna()).all()
        preds[precision], _ = predict_packed(model, test, autocast=choice.autocast)
    assert np.isfinite(preds["bf16"]).all() and not np.array_equal(preds["bf16"], preds["fp32"])
    np.testing.assert_allclose(preds["bf16"], preds["fp32"], atol=0.1)
