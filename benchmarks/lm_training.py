"""Training throughput of the laptop preset's language models (a measurement, not a test).

    python benchmarks/lm_training.py            # about 5 minutes on 2 CPU cores

For SmolLM2-135M on batches of real prompts: full fine-tuning, LoRA (r=8 on q/v of every
layer), and frozen lower layers + cache (top 2 of 30 trained); for all-MiniLM-L6-v2: full
fine-tuning. Reports examples/s, tokens/s, the achieved FLOP/s as a fraction of this CPU's
measured fp32 matmul peak (training ≈ 6 FLOPs per parameter per token on the trained path,
2 on the frozen one), and peak memory. Each configuration runs in its own process so that its
peak resident memory is its own. Writes benchmarks/out/lm_training.json.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
CONFIGS = ["smollm2-full", "smollm2-lora", "smollm2-cached-top2", "minilm-full"]
BATCH, STEPS = 8, 3


def matmul_peak_gflops(sizes=(1024, 2048, 3072), repeats: int = 5) -> float:
    """This CPU's fp32 matmul peak: the best single square matmul over a few sizes."""
    import torch

    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def run_one(config: str) -> dict:
    import torch

    from llmrec.cache import compute_hidden
    from llmrec.lm import build_rating_model, collator_for, load_lm, make_dataset
    from llmrec.splits import ensure_processed

    processed = ensure_processed(verbose=False)
    examples = processed.split("train").sample(BATCH * (STEPS + 1), random_state=0)
    lm = load_lm("minilm-l6" if config.startswith("minilm") else "smollm2-135m")
    ds = make_dataset(lm, processed, examples, history_genres=False)
    tokens_per_example = sum(len(x) for x in ds.inputs) / len(ds)
    collate = collator_for(lm)
    n_params = sum(p.numel() for n, p in lm.model.named_parameters() if "embed" not in n)
    result = {"config": config, "tokens_per_example": tokens_per_example}
    if config == "smollm2-cached-top2":
        start = time.perf_counter()
        hidden = compute_hidden(lm, 2, ds.inputs, batch_size=BATCH, autocast=False)
        seconds = time.perf_counter() - start
        result["cache_tokens_per_s"] = sum(len(x) for x in ds.inputs) / seconds
        batches = [collate([{"inputs_embeds": h, "labels": 3.0} for h in hidden[i:i + BATCH]])
                   for i in range(0, len(hidden), BATCH)]
        model = build_rating_model(lm, "regression", top_layers=2)
        trained = 2 / lm.n_layers
    else:
        batches = [collate([ds[j] for j in range(i, i + BATCH)]) for i in range(0, len(ds), BATCH)]
        model = build_rating_model(lm, "regression", lora=config.endswith("lora"))
        trained = 1.0
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    model.train()
    times = []
    for batch in batches:
        start = time.perf_counter()
        loss = model(**batch)["loss"]
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
        times.append(time.perf_counter() - start)
    step = sum(times[1:]) / len(times[1:])  # the first step warms up
    tokens = BATCH * tokens_per_example
    flops = 6 * n_params * trained * tokens  # forward + backward of the trained path
    result.update(step_s=step, examples_per_s=BATCH / step, tokens_per_s=tokens / step,
                  gflops_per_s=flops / step / 1e9,
                  trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
                  peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    return result


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        print(json.dumps(run_one(sys.argv[2])))
        return
    os.environ.setdefault("TQDM_DISABLE", "1")
    peak = matmul_peak_gflops()
    rows = []
    for config in CONFIGS:
        proc = subprocess.run([sys.executable, __file__, "--one", config], capture_output=True,
                              text=True, check=True)
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row["fraction_of_matmul_peak"] = row["gflops_per_s"] / peak
        rows.append(row)
        print(f"{config:>20}: {row['examples_per_s']:.2f} ex/s, {row['tokens_per_s']:.0f} tok/s, "
              f"{row['fraction_of_matmul_peak']:.0%} of peak, {row['peak_rss_gb']:.1f} GB")
    OUT.mkdir(exist_ok=True)
    (OUT / "lm_training.json").write_text(json.dumps(
        {"matmul_peak_fp32_gflops": peak, "threads": int(__import__("torch").get_num_threads()),
         "batch": BATCH, "rows": rows}, indent=2) + "\n")
    print(f"fp32 matmul peak: {peak:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
