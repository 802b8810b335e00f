"""Regression against classification, the packed SmolLM2 of notebooks 03 and 04, over five
training seeds (a measurement, not a test).

    python benchmarks/heads_seeds.py        # about 10 minutes on 2 CPU cores, after the laptop 03

Each seed trains both heads exactly as the laptop preset does (top 2 layers from 03's layer cache,
one epoch over the 8,723 training targets (WINDOW 16), the better of two checkpoints on the N_VAL
validation users; classification at 03's LR, regression at 04's), and scores them on every test
user and on every validation user that training did not follow (no choice between the two heads
is made on them, so they are a second held-out sample: 671 test users alone give a paired interval
of about ±0.012, wider than the ±0.01 a tie must fit in). Two intervals of RMSE(regression) −
RMSE(classification) on those users:

- over seeds: a t-interval of the per-seed differences (how much the training seed moves it);
- over users: a paired bootstrap of the difference of the seed-averaged RMSEs.

Verdict: a head is better when both intervals are on one side of 0; a tie when both lie within
±0.01; otherwise inconclusive, with the widths that say how far it is. Writes
benchmarks/out/heads_seeds.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
SEEDS, LRS, N_VAL, N_BOOT = (0, 1, 2, 3, 4), {"classification": 1e-4, "regression": 3e-4}, 100, 1000


def main() -> dict:
    import numpy as np
    import pandas as pd
    from scipy import stats

    from llmrec.cache import cached_hidden
    from llmrec.efficiency import packed_point
    from llmrec.lm import load_lm
    from llmrec.metrics import rmse
    from llmrec.packed import build_sequences
    from llmrec.splits import ensure_processed

    processed = ensure_processed(verbose=False)
    test = processed.split("test")
    lm = load_lm("smollm2-135m", seed=0)
    seqs = build_sequences(processed, lm.tokenizer, window=16, line="{name}: {rating}", min_context=3)
    inputs = cached_hidden(lm, 2, seqs.token_ids, name="smollm2-135m-packed")
    followed = processed.sample("val", N_VAL, 0)
    held_out = pd.concat([test, processed.split("val").drop(followed.index)])  # never followed in training
    val, test_slots = seqs.slots_for(followed), seqs.slots_for(held_out)
    mean_rating = float(processed.train_ratings()["rating"].mean())
    y, users = held_out["rating"].to_numpy(), held_out["user_idx"].to_numpy()
    preds, seconds = {}, {}
    for seed in SEEDS:
        for head, lr in LRS.items():
            start = time.perf_counter()
            point = packed_point(lm, inputs, seqs.targets("train"), val, test_slots, seed=seed,
                                 output_dir=OUT / "checkpoints", top_layers=2, init_rating=mean_rating,
                                 lr=lr, batch_size=8, head=head, keep_predictions=True)
            preds[head, seed], seconds[head, seed] = point["predictions"], time.perf_counter() - start
            print(f"seed {seed} {head}: held-out RMSE {point['metrics']['rmse']:.4f} ({seconds[head, seed]:.0f} s)")
    diffs = np.array([rmse(y, preds["regression", s]) - rmse(y, preds["classification", s]) for s in SEEDS])
    t = stats.t.ppf(0.975, len(SEEDS) - 1) * diffs.std(ddof=1) / np.sqrt(len(SEEDS))
    over_seeds = (diffs.mean() - t, diffs.mean() + t)
    rng, groups = np.random.default_rng(0), np.unique(users)
    by_user = {u: np.flatnonzero(users == u) for u in groups}
    boot = []
    for _ in range(N_BOOT):
        idx = np.concatenate([by_user[u] for u in rng.choice(groups, len(groups))])
        boot.append(np.mean([rmse(y[idx], preds["regression", s][idx]) - rmse(y[idx], preds["classification", s][idx])
                             for s in SEEDS]))
    over_users = tuple(np.percentile(boot, [2.5, 97.5]))
    lows, highs = (over_seeds[0], over_users[0]), (over_seeds[1], over_users[1])
    verdict = ("regression is better" if max(highs) < 0 else "classification is better" if min(lows) > 0
               else "a tie within ±0.01" if min(lows) > -0.01 and max(highs) < 0.01 else "inconclusive")
    result = {"seeds": list(SEEDS), "lr": LRS, "n_val_users_followed": N_VAL,
              "n_scored": {"test": len(test), "validation not followed": len(held_out) - len(test)},
              "rmse": {f"{h} s{s}": rmse(y, p) for (h, s), p in preds.items()},
              "differences": diffs.tolist(), "mean_difference": float(diffs.mean()),
              "interval_over_seeds_t95": list(map(float, over_seeds)),
              "interval_over_users_bootstrap95": list(map(float, over_users)),
              "verdict": verdict, "seconds": {f"{h} s{s}": v for (h, s), v in seconds.items()}}
    OUT.mkdir(exist_ok=True)
    (OUT / "heads_seeds.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("differences", "interval_over_seeds_t95",
                                              "interval_over_users_bootstrap95", "verdict")}, indent=1))
    return result


if __name__ == "__main__":
    main()
