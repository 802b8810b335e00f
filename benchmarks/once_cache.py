"""What caching the frozen layers buys DIRE (ONCE, notebook 06): not a test, numbers for the notes.

    python benchmarks/once_cache.py [--models minilm-l6 smollm2-135m] [--k 1 2] [--items 128]

For each encoder and number of tuned layers k, on the embedded MovieLens click task:
- the one-time cost of the cache: seconds and tokens/s to run the frozen layers over every item,
  and its size on disk / in memory (float32);
- seconds per training step of the content encoder (forward, backward, Adam) on a batch of
  items: cached top-k, frozen-but-recomputed, and full fine-tuning;
- the speed-up of the cache against the theory: L/k against full fine-tuning, (L + 2k)/(3k)
  against a frozen bottom that is recomputed each step (a forward pass costs one unit, a forward
  plus backward about three). Target (issue: ONCE/DIRE): at least 80% of the theoretical ratio.
- peak resident memory of the process.
Writes benchmarks/out/once_cache.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from llmrec.cache import cached_hidden
from llmrec.clicks import rating_clicks, restrict_items, training_samples, with_splits
from llmrec.lm import load_lm
from llmrec.once import CachedItems, TokenItems, build_encoder, item_encodings, time_encoder_steps

OUT = Path(__file__).resolve().parent / "out"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["minilm-l6", "smollm2-135m"])
    parser.add_argument("--k", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--items", type=int, default=128, help="items per training step")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    torch.manual_seed(0)

    data = with_splits(rating_clicks(history_len=5))
    train = training_samples(data.split("train"), 4).sample(2000, random_state=0)
    data = restrict_items(data, train, data.split("val"), data.split("test"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            lm = load_lm(name)
            lm.model.eval()
            ids, enc = item_encodings(lm, data)
            n_layers = lm.model.config.num_hidden_layers
            tokens = TokenItems(ids, enc, lm.tokenizer.pad_token_id or 0)
            full_s = np.median(time_encoder_steps(build_encoder("DIRE", tokens, lm=lm, top_layers=n_layers,
                                                                full=True), tokens, args.items, args.steps))
            for k in args.k:
                start = time.perf_counter()
                hidden = cached_hidden(lm, k, enc, name=f"bench-{name}-k{k}",
                                       dtype=torch.float32, folder=Path(tmp), verbose=False)
                build_s = time.perf_counter() - start
                size_mb = sum(f.stat().st_size
                              for f in Path(tmp).glob(f"bench-{name}-k{k}-*/hidden.pt")) / 2**20
                cached = CachedItems(ids, hidden)
                cached_s = np.median(time_encoder_steps(build_encoder("DIRE", cached, lm=lm, top_layers=k),
                                                        cached, args.items, args.steps))
                frozen_s = np.median(time_encoder_steps(build_encoder("DIRE", tokens, lm=lm, top_layers=k,
                                                                      full=True), tokens, args.items,
                                                        args.steps))
                row = {"model": name, "layers": n_layers, "k": k, "items": len(ids),
                       "tokens": sum(map(len, enc)), "cache_build_s": build_s,
                       "cache_tokens_per_s": sum(map(len, enc)) / build_s, "cache_mb": size_mb,
                       "step_cached_s": cached_s, "step_frozen_no_cache_s": frozen_s,
                       "step_full_finetune_s": full_s,
                       "speedup_vs_full": full_s / cached_s, "theory_vs_full": n_layers / k,
                       "speedup_vs_frozen": frozen_s / cached_s,
                       "theory_vs_frozen": (n_layers + 2 * k) / (3 * k)}
                row["of_theory_vs_full"] = row["speedup_vs_full"] / row["theory_vs_full"]
                row["of_theory_vs_frozen"] = row["speedup_vs_frozen"] / row["theory_vs_frozen"]
                rows.append(row)
                print(f"{name} k={k}/{n_layers}: cache {build_s:.0f} s "
                      f"({row['cache_tokens_per_s']:,.0f} tok/s, {size_mb:.0f} MB); step "
                      f"cached {cached_s:.3f} s, frozen {frozen_s:.3f} s, full {full_s:.3f} s; "
                      f"speed-up {row['speedup_vs_full']:.1f}x of {row['theory_vs_full']:.1f}x "
                      f"({row['of_theory_vs_full']:.0%}) vs full, "
                      f"{row['speedup_vs_frozen']:.2f}x of {row['theory_vs_frozen']:.2f}x "
                      f"({row['of_theory_vs_frozen']:.0%}) vs frozen", flush=True)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    OUT.mkdir(exist_ok=True)
    (OUT / "once_cache.json").write_text(json.dumps(
        {"rows": rows, "peak_rss_gb": peak_gb, "items_per_step": args.items,
         "machine": {"processor": platform.processor() or platform.machine(),
                     "cores": os.cpu_count()}}, indent=2) + "\n")
    print(f"peak memory {peak_gb:.1f} GB -> {OUT / 'once_cache.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
