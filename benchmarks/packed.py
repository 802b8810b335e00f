"""Packed sequences against one prompt per target: training targets per second (a measurement,
not a test).

    python benchmarks/packed.py            # about 4 minutes on 2 CPU cores

The same model (SmolLM2-135M, top 2 of 30 layers trained from the layer cache), the same users
and the same training targets, on this machine, one run each:

- per prompt (Kang et al.'s formulation): one prompt per target (its HISTORY_LEN earlier ratings,
  the kit's prompt), the frozen layers run once per prompt, one epoch of the top layers;
- packed (the laptop preset's): one sequence per user (its last WINDOW training ratings), the
  frozen layers run once per token, one epoch of the top layers over every target.

Reports targets/s of the whole (cache + one epoch), the frozen layers' tokens/s and their
achieved FLOP/s as a share of this CPU's measured fp32 matmul peak (2 FLOPs per weight per
token), and the peak resident memory. Writes benchmarks/out/packed.json.
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
USERS, WINDOW, BATCH = 48, 20, 8


def main() -> dict:
    import torch
    from lm_training import matmul_peak_gflops

    from llmrec.cache import bottom_layers, compute_hidden
    from llmrec.lm import build_rating_model, collator_for, load_lm, make_dataset
    from llmrec.packed import PackedDataset, build_packed_model, build_sequences, collate_packed
    from llmrec.splits import ensure_processed

    torch.manual_seed(0)
    processed = ensure_processed(verbose=False)
    lm = load_lm("smollm2-135m")
    users = sorted(processed.ratings.user_idx.unique())[:USERS]
    seqs = build_sequences(processed, lm.tokenizer, window=WINDOW, line="{name}: {rating}",
                           users=users)
    targets = seqs.targets("train")
    examples = processed.examples.set_index(["user_idx", "position"]).loc[
        list(zip(targets.user_idx, targets.position))].reset_index()
    frozen = bottom_layers(lm, 2)
    weights = sum(p.numel() for n, p in frozen.named_parameters() if "embed" not in n)
    peak = matmul_peak_gflops()

    def epoch(model, dataset, collate):
        optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        model.train()
        start = time.perf_counter()
        for s in range(0, len(dataset), BATCH):
            batch = collate([dataset[i] for i in range(s, min(s + BATCH, len(dataset)))])
            loss = model(**batch)["loss"]
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        return time.perf_counter() - start

    out = {"users": len(users), "targets": len(targets), "window": WINDOW,
           "matmul_peak_gflops": peak, "cpu_threads": torch.get_num_threads()}
    # per prompt: Kang et al.'s prompt for each target, frozen layers once per prompt
    ds = make_dataset(lm, processed, examples, history_genres=False)
    tokens = sum(len(x) for x in ds.inputs)
    start = time.perf_counter()
    hidden = compute_hidden(lm, 2, ds.inputs, batch_size=16)
    cache_s = time.perf_counter() - start
    ds.inputs, ds.key = hidden, "inputs_embeds"
    train_s = epoch(build_rating_model(lm, "classification", top_layers=2), ds, collator_for(lm))
    out["per_prompt"] = {"tokens": tokens, "cache_s": cache_s, "epoch_s": train_s}
    # packed: one sequence per user, every target read at its slot
    start = time.perf_counter()
    hidden = compute_hidden(lm, 2, seqs.token_ids, batch_size=16)
    cache_s = time.perf_counter() - start
    train_s = epoch(build_packed_model(lm, "classification", top_layers=2),
                    PackedDataset(hidden, targets), collate_packed)
    out["packed"] = {"tokens": seqs.n_tokens, "cache_s": cache_s, "epoch_s": train_s}
    for name in ("per_prompt", "packed"):
        r = out[name]
        r["targets_per_s"] = len(targets) / (r["cache_s"] + r["epoch_s"])
        r["frozen_tokens_per_s"] = r["tokens"] / r["cache_s"]
        r["frozen_share_of_peak"] = 2 * weights * r["frozen_tokens_per_s"] / 1e9 / peak
    out["speed_up"] = out["packed"]["targets_per_s"] / out["per_prompt"]["targets_per_s"]
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    return out


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    result = main()
    OUT.mkdir(exist_ok=True)
    (OUT / "packed.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
