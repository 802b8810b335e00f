"""Two choices of the laptop recipe, measured on the validation users (a measurement, not a test):
the base of the kit's residual head (cross-fitted MF, against the biases of the previous version)
and the window (how many of each user's last training ratings the packed sequence holds).

    python benchmarks/residual_window.py 16      # the window; about 4 minutes with 03's cache,
                                                 # 7 more to build the cache of a new window

SmolLM2-135M, packed sequences (`Title: r` lines), top 2 layers from the layer cache, one epoch at
lr 3e-4, batch 8 sequences, the better of two checkpoints on 100 validation users (as notebook 04).
Trains the residual head over MF cross-fitted in 5 folds (llmrec.packed.mf_offsets), then the
plain head; prints the RMSE of both on every validation user and on the test users, and the
paired interval of the residual head against MF on the test users (for the record: the choices
are made on validation). Writes benchmarks/out/residual_window_w<W>.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def main(window: int = 16) -> dict:
    import pandas as pd

    from llmrec.baselines import predict_baseline
    from llmrec.cache import cached_hidden
    from llmrec.lm import load_lm
    from llmrec.metrics import bootstrap_interval, rmse
    from llmrec.packed import (
        PackedDataset,
        build_packed_model,
        build_sequences,
        collate_packed,
        mf_offsets,
        predict_packed,
    )
    from llmrec.splits import ensure_processed
    from llmrec.training import seed_everything, train_with_trainer

    p = ensure_processed(verbose=False)
    test, val_all, val = p.split("test"), p.split("val"), p.sample("val", 100, 0)
    lm = load_lm("smollm2-135m", seed=0)
    seqs = build_sequences(p, lm.tokenizer, window=window, line="{name}: {rating}", min_context=3)
    inputs = cached_hidden(lm, 2, seqs.token_ids, name="smollm2-135m-packed")
    offsets, mf = mf_offsets(p, seqs.slots, seed=0)
    offsets = pd.Series(offsets, index=seqs.slots.index)
    both = pd.concat([seqs.slots_for(test), seqs.slots_for(val_all)])
    result = {"window": window, "tokens": seqs.n_tokens, "training_targets": len(seqs.targets("train"))}
    for name, base in (("residual over MF", offsets), ("plain", None)):
        pick = (lambda df: None) if base is None else (lambda df, b=base: b.loc[df.index].to_numpy())
        seed_everything(0)
        model = build_packed_model(lm, "regression", top_layers=2,
                                   init_rating=0.0 if base is not None else float(p.train_ratings().rating.mean()))
        train = PackedDataset(inputs, seqs.targets("train"), offsets=pick(seqs.targets("train")))
        follow = PackedDataset(inputs, seqs.slots_for(val), offsets=pick(seqs.slots_for(val)))
        train_with_trainer(model, train, follow, collate_packed, output_dir=OUT / "checkpoints", epochs=1,
                           lr=3e-4, batch_size=8, eval_batch_size=8, seed=0, eval_points=2,
                           prediction_loss_only=True)
        pred, _ = predict_packed(model, PackedDataset(inputs, both, offsets=pick(both)))
        result[name] = {"validation_rmse": rmse(val_all.rating, pred[len(test):]),
                        "test_rmse": rmse(test.rating, pred[:len(test)])}
        if base is not None:
            mf_test = predict_baseline(mf, p, test)
            result["mf"] = {"validation_rmse": rmse(val_all.rating, predict_baseline(mf, p, val_all)),
                            "test_rmse": rmse(test.rating, mf_test)}
            result[name]["test_vs_mf_95"] = list(bootstrap_interval(
                test.rating.to_numpy(), pred[:len(test)], baseline=mf_test, groups=test["user_idx"],
                n_boot=1000, seed=0))
        print(name, result[name])
    OUT.mkdir(exist_ok=True)
    (OUT / f"residual_window_w{window}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 16)
