"""Which precision the frozen pass runs in: chosen by measuring on this machine, not assumed.

bf16 autocast ran SmolLM2's frozen layers 1.66x faster than fp32 on an AMD EPYC with AVX512-BF16,
and 3.5x *slower* on an Intel Xeon without it. `PRECISION = "auto"` therefore times a batch of the
real frozen pass in both precisions, interleaved, and takes bf16 only when it is faster by a clear
margin *and* agrees with fp32 on the same batch: every token's state (cosine) and, for a language
model, what the pretrained model would predict from it (its next-token distribution, total
variation distance). The answer is remembered per machine and model (seconds, once), and
every cache is keyed by the precision that made it, so an fp32 run is never served bf16 states.
The same choice runs the trained top layers (Trainer's bf16, an autocast on the CPU: about 1.5-1.8x
faster on the same EPYC, benchmarks/README.md) and the predictions.

    choice = choose_precision(PRECISION, lm, TOP_LAYERS, encodings)
    hidden = cached_hidden(lm, TOP_LAYERS, encodings, name=..., autocast=choice.autocast)
    train_with_trainer(..., precision=choice)
    predictions = predict_dataset(..., autocast=choice.autocast)
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .cache import compute_hidden, top_layers_body
from .io import write_json
from .lm import model_identity
from .paths import cache_dir

PRECISIONS = ("auto", "fp32", "bf16")
MARGIN = 1.15  # bf16 must be at least this much faster than fp32 (timings on 2 cores vary by ~5%)
# Agreement, set from measurement on the kit's own inputs (benchmarks/README.md, "Precision"):
# SmolLM2's packed sequences on an AMD EPYC: lowest cosine over 9,004 tokens 0.9977, largest shift
# of the next-token distribution 0.096 (median 0.006); MiniLM's item texts: cosine 0.9999.
MIN_COSINE = 0.995  # each token's bf16 state at least this close to fp32's
MAX_SHIFT = 0.2  # the pretrained model's next-token distribution moved by at most this (TV)


@dataclass
class PrecisionChoice:
    precision: str  # "fp32" or "bf16"
    reason: str
    speedup: float | None = None  # fp32 seconds / bf16 seconds, as measured
    min_cosine: float | None = None  # the lowest cosine between a token's bf16 and fp32 states
    max_shift: float | None = None  # the largest next-token distribution shift (language models)
    device: str = "cpu"

    @property
    def autocast(self) -> bool:
        """What cached_hidden, make_dataset and the predict functions take: bf16 autocast or exact fp32."""
        return self.precision == "bf16"

    def context(self):
        """Code run by hand in the chosen precision: `with choice.context(): model(...)`."""
        return torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.autocast)

    def __str__(self) -> str:
        return self.precision


def check_precision(value) -> str:
    if value not in PRECISIONS:
        raise ValueError(f"PRECISION: {value!r} is not one of {', '.join(map(repr, PRECISIONS))}: use "
                         "'auto' (it measures which is faster on this machine and agrees with fp32) or "
                         "'fp32' (exact)")
    return value


def machine_id() -> str:
    """This machine, as far as speed goes: the processor, its bf16 instructions, torch's version
    and the number of threads it runs."""
    model = platform.processor() or platform.machine()
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("", platform.machine(), "x86_64"):
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = " ".join(sorted(x for x in line.split(":", 1)[1].split()
                                            if "bf16" in x or x.startswith("amx")))
                    break
    except OSError:
        pass
    return f"{model} [{flags or 'no bf16 flags'}] torch {torch.__version__} threads {torch.get_num_threads()}"


@torch.no_grad()
def prediction_shift(lm, top_layers: int, exact: list[torch.Tensor], low: list[torch.Tensor]) -> float | None:
    """The largest total variation distance, over every token, between the next-token
    distributions the pretrained model computes from fp32 and from bf16 frozen states (the rest of
    the model run exactly). None for a model without a language-model head (an encoder)."""
    head = getattr(lm.model, "get_output_embeddings", lambda: None)()
    if lm.family != "causal" or head is None:
        return None
    top, worst = top_layers_body(lm, top_layers).eval(), 0.0
    for a, b in zip(exact, low):
        p, q = (torch.softmax(head(top(inputs_embeds=x[None].float(), use_cache=False)
                                   .last_hidden_state[0]).float(), -1) for x in (a, b))
        worst = max(worst, float(0.5 * (p - q).abs().sum(-1).max()))
    return worst


def measure_frozen_pass(lm, top_layers: int, sample: list[list[int]], batch_size: int = 16,
                        repeats: int = 2) -> dict:
    """Seconds of the frozen pass over `sample` in fp32 and in bf16 autocast (after a warm-up of
    each on two examples; one run each, and up to `repeats` interleaved runs, keeping the faster,
    while the speed-up is close enough to MARGIN for the timings' noise to decide), and how far
    apart their results are: the lowest cosine between a token's two states, the largest relative
    error, and the largest shift of the pretrained model's next-token distribution."""
    def run(bf16: bool, inputs) -> tuple[float, list[torch.Tensor]]:
        start = time.perf_counter()
        states = compute_hidden(lm, top_layers, inputs, batch_size, desc="timing", autocast=bf16)
        return time.perf_counter() - start, states

    run(False, sample[:2]), run(True, sample[:2])  # first calls pay for kernel selection and memory
    times = {False: [], True: []}
    for _ in range(repeats):
        if times[True] and not 0.85 * MARGIN < min(times[False]) / min(times[True]) < 1.3 * MARGIN:
            break  # clearly faster or clearly not: another round would not change the choice
        for bf16 in (False, True):
            seconds, states = run(bf16, sample)
            times[bf16].append(seconds)
            if bf16:
                low = states
            else:
                exact = states
    a, b = torch.cat(exact).float(), torch.cat(low).float()
    cosine = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    relative = (a - b).norm(dim=-1) / a.norm(dim=-1).clamp_min(1e-12)
    return {"fp32_s": min(times[False]), "bf16_s": min(times[True]),
            "tokens": sum(len(e) for e in sample), "min_cosine": float(cosine.min()),
            "max_relative_error": float(relative.max()),
            "max_shift": prediction_shift(lm, top_layers, exact, low)}


def _sample(encodings: list[list[int]], batch_size: int, batches: int, seed: int = 0) -> list[list[int]]:
    """A few batches' worth of the real inputs (the same draw every time)."""
    n = min(len(encodings), batch_size * batches)
    return [encodings[i] for i in sorted(random.Random(seed).sample(range(len(encodings)), n))]


def choose_precision(preference: str, lm, top_layers: int, encodings: list[list[int]], *,
                     batch_size: int = 16, batches: int = 1,
                     measure: Callable[..., dict] = measure_frozen_pass,
                     folder: Path | None = None, verbose: bool = True) -> PrecisionChoice:
    """PRECISION as asked ('fp32', 'bf16'), or for 'auto' the measured choice: bf16 where it is
    at least MARGIN times faster than fp32 on this machine and agrees with it (every token's
    cosine >= MIN_COSINE; the pretrained model's next-token distribution shifted by at most
    MAX_SHIFT), else fp32. Remembered in the data cache (precision/), per machine and model
    (measured on the first inputs and split layer it is asked for: every notebook after that
    takes the same answer); delete that folder to measure again."""
    check_precision(preference)
    if preference != "auto":
        return PrecisionChoice(preference, "as PRECISION asks", device=lm.model.device.type)
    if lm.model.device.type != "cpu":  # a GPU's bf16 is the well-trodden case
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return PrecisionChoice("bf16" if bf16 else "fp32", f"auto on {lm.model.device.type}",
                               device=lm.model.device.type)
    if lm.family not in ("causal", "encoder"):  # a seq2seq model's frozen pass is not cached
        return PrecisionChoice("fp32", f"auto: {lm.family} models run exact fp32 on the CPU (bf16 "
                               "is measured only for the cached frozen pass of decoder-only and "
                               "encoder models)")
    key = {"machine": machine_id(), "model": model_identity(lm.name)}
    path = (folder or cache_dir() / "precision") / (
        hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16] + ".json")
    try:  # a damaged file (cut, edited, other numbers) is measured again and rewritten
        measured = json.loads(path.read_text())["measured"]
        numbers = [measured.get(k) for k in ("fp32_s", "bf16_s", "min_cosine")]
        if not all(isinstance(v, (int, float)) for v in numbers) or \
                not isinstance(measured.get("max_shift", 0.0), (int, float, type(None))):
            raise ValueError(f"{path}: its measurements are incomplete")
        remembered = True
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        measured = measure(lm, top_layers, _sample(encodings, batch_size, batches), batch_size)
        remembered = False
    speedup = measured["fp32_s"] / max(measured["bf16_s"], 1e-9)
    shift = measured.get("max_shift")
    agree = measured["min_cosine"] >= MIN_COSINE and (shift is None or shift <= MAX_SHIFT)
    precision = "bf16" if speedup >= MARGIN and agree else "fp32"
    reason = (f"bf16 autocast ran the frozen layers {speedup:.2f}x as fast as fp32 on this machine "
              f"(bf16 taken from {MARGIN:.2f}x), its states agreeing to a cosine of "
              f"{measured['min_cosine']:.4f} (needed: {MIN_COSINE})"
              + ("" if shift is None else f" and the next-token distribution shifting by at most "
                                          f"{shift:.3f} (allowed: {MAX_SHIFT})"))
    choice = PrecisionChoice(precision, reason, speedup, measured["min_cosine"], shift)
    if not remembered:
        os.makedirs(path.parent, exist_ok=True)
        write_json(path, {"key": key, "measured": measured, "choice": asdict(choice)})
    if verbose:
        print(f"PRECISION auto -> {precision}: {reason}"
              + (" (remembered)" if remembered else f" ({measured['tokens']:,} tokens timed)"))
    return choice
