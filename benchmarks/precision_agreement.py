"""bf16 against fp32 on the kit's own inputs: how far apart, and how much faster. What
`llmrec.precision`'s thresholds (MIN_COSINE, MAX_SHIFT) were set from.

    .venv/bin/python benchmarks/precision_agreement.py     # about three minutes on 2 CPU cores

1. SmolLM2-135M, the frozen pass of notebook 03's packed sequences (bottom 28 of 30 layers) in fp32
   and in bf16 autocast, over 48 sequences of the real split, then on 96 test users' sequences:
   the lowest cosine between a token's two states (every token, and the slots the heads read);
   the largest shift (total variation distance) of the pretrained model's next-token
   distribution; and the expected rating the untrained classification head reads at the test
   slots (the "zero-shot, reading its ratings" row), mean and largest difference.
2. MiniLM, the same cosine over notebook 06's item texts.
3. A training step of the top 2 layers (batch 8 x 190 tokens, forward, backward, AdamW) in fp32
   and in bf16 autocast, classification and regression heads: the best of 4 interleaved runs.

Writes benchmarks/out/precision_agreement.json and prints the lines for benchmarks/README.md.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from llmrec.cache import compute_hidden
from llmrec.clicks import rating_clicks
from llmrec.lm import load_lm
from llmrec.once import item_encodings
from llmrec.packed import PackedDataset, build_packed_model, build_sequences, predict_packed
from llmrec.precision import _sample, machine_id, prediction_shift
from llmrec.splits import ensure_processed

OUT = Path(__file__).resolve().parent / "out"


def cosines(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(torch.cat(a).float(), torch.cat(b).float(), dim=-1)


def smollm2(out: dict) -> None:
    processed = ensure_processed("movielens-small", history_len=5, split="leave_last", seed=0)
    lm = load_lm("smollm2-135m")
    seqs = build_sequences(processed, lm.tokenizer, window=16, line="{name}: {rating}", min_context=3)
    sample = _sample(seqs.token_ids, 16, 3)
    a, b = compute_hidden(lm, 2, sample, 16), compute_hidden(lm, 2, sample, 16, autocast=True)
    c = cosines(a, b)
    out["smollm2_tokens"] = len(c)
    out["smollm2_min_cosine"] = float(c.min())
    out["smollm2_max_shift"] = prediction_shift(lm, 2, a, b)
    # the untrained classifier at the test slots of 96 users
    slots = seqs.slots_for(processed.split("test"))
    keep = sorted(slots.seq.unique()[:96].tolist())
    test = slots[slots.seq.isin(keep)]
    full = {False: [None] * len(seqs), True: [None] * len(seqs)}
    for bf16 in (False, True):
        for i, h in zip(keep, compute_hidden(lm, 2, [seqs.token_ids[i] for i in keep], 16, autocast=bf16)):
            full[bf16][i] = h
    at = {bf16: torch.stack([full[bf16][s][p] for s, p in zip(test.seq, test.slot)]) for bf16 in full}
    out["smollm2_slot_min_cosine"] = float(torch.nn.functional.cosine_similarity(at[False], at[True], dim=-1).min())
    model = build_packed_model(lm, "classification", top_layers=2).eval()
    pred = {bf16: predict_packed(model, PackedDataset(full[bf16], test), batch_size=8)[0] for bf16 in full}
    diff = np.abs(pred[True] - pred[False])
    out["zero_shot_reading_users"] = len(keep)
    out["zero_shot_reading_mean_abs_diff"] = float(diff.mean())
    out["zero_shot_reading_max_abs_diff"] = float(diff.max())
    # a training step of the top layers
    x = torch.randn(8, 190, lm.hidden_size, generator=torch.Generator().manual_seed(0))
    slot = torch.arange(5, 190, 10).repeat(8, 1)
    labels = torch.randint(1, 6, slot.shape, generator=torch.Generator().manual_seed(0)).float()
    mask = torch.ones(8, 190, dtype=torch.long)
    for head in ("classification", "regression"):
        model = build_packed_model(lm, head, top_layers=2)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

        def step(bf16: bool, model=model, opt=opt) -> float:
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = model(inputs_embeds=x, attention_mask=mask, slot_index=slot, labels=labels)["loss"]
            loss.backward()
            opt.step()
            opt.zero_grad()
            return time.perf_counter() - start

        step(False), step(True)
        times = {False: [], True: []}
        for _ in range(4):
            for bf16 in (False, True):
                times[bf16].append(step(bf16))
        out[f"train_step_{head}_fp32_s"] = min(times[False])
        out[f"train_step_{head}_bf16_s"] = min(times[True])


def minilm(out: dict) -> None:
    data = rating_clicks("movielens-small", min_item_ratings=10, seed=0)
    lm = load_lm("minilm-l6")
    _, enc = item_encodings(lm, data)
    sample = _sample(enc, 64, 4)
    c = cosines(compute_hidden(lm, 0, sample, 64), compute_hidden(lm, 0, sample, 64, autocast=True))
    out["minilm_items"], out["minilm_min_cosine"] = len(sample), float(c.min())


def main() -> None:
    out = {"machine": machine_id()}
    smollm2(out)
    minilm(out)
    OUT.mkdir(exist_ok=True)
    (OUT / "precision_agreement.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"on {out['machine']}:")
    print(f"- SmolLM2 frozen states, {out['smollm2_tokens']:,} tokens of the packed sequences: lowest cosine "
          f"{out['smollm2_min_cosine']:.4f} (at the {out['zero_shot_reading_users']} test users' slots "
          f"{out['smollm2_slot_min_cosine']:.5f}); largest next-token shift {out['smollm2_max_shift']:.3f}")
    print(f"- untrained classifier at those test slots: expected rating moved by "
          f"{out['zero_shot_reading_mean_abs_diff']:.4f} on average, {out['zero_shot_reading_max_abs_diff']:.3f} at most")
    print(f"- MiniLM, {out['minilm_items']} item texts: lowest cosine {out['minilm_min_cosine']:.4f}")
    for head in ("classification", "regression"):
        f, b = out[f"train_step_{head}_fp32_s"], out[f"train_step_{head}_bf16_s"]
        print(f"- a training step of the top 2 layers, {head}: fp32 {f:.3f} s, bf16 {b:.3f} s ({f / b:.2f}x)")


if __name__ == "__main__":
    main()
