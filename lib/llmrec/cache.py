"""Freeze the lower layers, compute their output once, train only the top layers (ONCE's trick).

The lower layers of a pretrained LM are the least task-specific, so they are frozen. Their output
— the hidden state that enters the first trained layer — then never changes, so it is computed
once per example and stored; each training step runs only the top layers. With 2 of SmolLM2's
30 layers trained, a step costs about 2/30 of a full forward and backward pass.

The split is exact: the top layers see the same hidden states, the same causal mask built from
the same attention mask, and the same positions (0..T-1, right padding) as in the full model. The
tests check that a cached forward equals the full forward.

Implemented for decoder-only (Llama-family) models, whose inner model accepts `inputs_embeds`:
the "bottom" is the inner model cut after layer L with its final norm removed; the "top" is the
inner model with only the layers from L on, fed the cached states as `inputs_embeds`. For
BERT-like encoders (ONCE's BERT rows, notebook 06) the bottom is the model with only its first L
layers, and the top runs layers L.. with the same bidirectional attention mask.
"""

from __future__ import annotations

import copy
import hashlib
import json
import pickle
import re
import time
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from .batching import pad_batch
from .io import atomic_dir
from .paths import processed_dir

CACHE_FORMAT = 1


def _inner(lm) -> nn.Module:
    if lm.family not in ("causal", "encoder"):
        raise ValueError(f"layer caching needs a decoder-only or encoder model; {lm.name!r} is "
                         f"{lm.family}. Use full fine-tuning or LoRA for it instead.")
    return lm.model.base_model


def _encoder_layers(lm) -> nn.ModuleList:
    inner = _inner(lm)
    if not hasattr(getattr(inner, "encoder", None), "layer"):
        raise ValueError(f"{lm.name!r} ({lm.model_type}) is not a BERT-like encoder "
                         "(model.encoder.layer); layer caching is not implemented for it")
    return inner.encoder.layer


class EncoderBottom(nn.Module):
    """A BERT-like encoder's embeddings and first `split` layers (shares the loaded weights)."""

    def __init__(self, lm, split: int):
        super().__init__()
        self.inner = copy.copy(_inner(lm))
        self.inner._modules = dict(self.inner._modules)
        encoder = copy.copy(self.inner.encoder)
        encoder._modules = dict(encoder._modules)
        encoder.layer = nn.ModuleList(list(_encoder_layers(lm))[:split])
        self.inner.encoder = encoder
        self.inner.pooler = None

    def forward(self, input_ids, attention_mask, **kwargs):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask)


class EncoderTop(nn.Module):
    """Copies of a BERT-like encoder's layers from `split` on (up to `stop`), fed cached hidden
    states with the model's own bidirectional attention mask. With no layers (k = 0) it returns
    its input."""

    def __init__(self, lm, split: int, stop: int | None = None):
        super().__init__()
        self.config = copy.deepcopy(lm.model.config)
        self.layer = nn.ModuleList(copy.deepcopy(list(_encoder_layers(lm))[split:stop]))

    def forward(self, inputs_embeds, attention_mask, **kwargs):
        # lazy: transformers takes seconds to import; only the encoders' forward pass needs it
        from transformers.masking_utils import create_bidirectional_mask
        from transformers.modeling_outputs import BaseModelOutput

        mask = create_bidirectional_mask(config=self.config, inputs_embeds=inputs_embeds,
                                         attention_mask=attention_mask)
        hidden = inputs_embeds
        for layer in self.layer:
            hidden = layer(hidden, mask)
        return BaseModelOutput(last_hidden_state=hidden)


def _slice(inner: nn.Module, start: int, stop: int | None, keep_norm: bool,
           own_weights: bool = False) -> nn.Module:
    """A shallow copy of the inner model that runs only layers[start:stop]. With `own_weights`
    the layers and the norm are copies: training them (or wrapping them with LoRA, which peft
    does in place) leaves the loaded model as it was."""
    part = copy.copy(inner)
    part._modules = dict(inner._modules)  # never touch the original's module registry
    layers = list(inner.layers)[start:stop]
    part.layers = nn.ModuleList(copy.deepcopy(layers) if own_weights else layers)
    if own_weights:
        part.norm = copy.deepcopy(inner.norm)
    part.config = copy.deepcopy(inner.config)
    part.config.num_hidden_layers = len(part.layers)
    if getattr(part.config, "layer_types", None):  # e.g. sliding/full attention per layer
        part.config.layer_types = list(inner.config.layer_types)[start:stop]
    if not keep_norm:
        part.norm = nn.Identity()
    if start > 0:
        part.embed_tokens = None  # the top part reads cached states, never token ids
    return part


def check_top_layers(lm, top_layers: int) -> int:
    n = lm.model.config.num_hidden_layers
    if not 0 <= top_layers <= n:
        raise ValueError(f"TOP_LAYERS must be between 0 and {n} for {lm.name!r}, got {top_layers}")
    return n - top_layers


def bottom_layers(lm, top_layers: int) -> nn.Module:
    """The frozen part: embeddings and layers[:L]; returns the hidden state entering layer L."""
    split = check_top_layers(lm, top_layers)
    if lm.family == "encoder":
        return EncoderBottom(lm, split).eval()
    return _slice(_inner(lm), 0, split, keep_norm=False).eval()  # run under no_grad


def top_layers_body(lm, top_layers: int) -> nn.Module:
    """The trained part: copies of layers[L:] and the final norm, fed cached states as
    inputs_embeds. Each call gives fresh copies of the pretrained weights, so a zero-shot model,
    a fine-tuned one and a LoRA variant never share (and never overwrite) each other's layers."""
    split = check_top_layers(lm, top_layers)
    if lm.family == "encoder":
        return EncoderTop(lm, split)
    return _slice(_inner(lm), split, None, keep_norm=True, own_weights=True)


def _check_autocast(autocast) -> bool:
    if not isinstance(autocast, bool):
        raise TypeError(f"AUTOCAST must be True or False, got {autocast!r}: False (the default) "
                         "stores exact float32 states; True runs the frozen layers in bf16 "
                         "autocast, faster on CPUs with AVX512-BF16 or AMX but not exact")
    return autocast


@torch.no_grad()
def compute_hidden(lm, top_layers: int, encodings: list[list[int]], batch_size: int = 16,
                   dtype: torch.dtype = torch.float32, desc: str = "caching",
                   autocast: bool = False) -> list[torch.Tensor]:
    """The hidden state entering the first trained layer, one [length, dim] tensor per example.
    Batches are formed from examples of similar length so that little is spent on padding. By
    default exact: float32 computed and stored; `autocast=True` computes in bf16 on the CPU,
    `dtype` sets what is stored."""
    use_bf16 = _check_autocast(autocast)
    return _run_by_length(lm, bottom_layers(lm, top_layers), encodings, "input_ids", batch_size,
                          dtype, desc + (" (bf16 autocast)" if use_bf16 else ""), use_bf16)


@torch.no_grad()
def _run_by_length(lm, part: nn.Module, inputs: list, key: str, batch_size: int,
                   dtype: torch.dtype, desc: str, use_bf16: bool = False) -> list[torch.Tensor]:
    """`part` over every input (token ids or states), in batches of similar length so that
    little is spent on padding; one [length, dim] tensor per input, in the inputs' order."""
    order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))
    out: list[torch.Tensor | None] = [None] * len(inputs)
    pad = lm.tokenizer.pad_token_id or 0
    device = next(lm.model.parameters()).device
    extra = {"use_cache": False} if lm.family == "causal" else {}
    batches = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    for idx in tqdm(batches, desc=desc, unit="batch", leave=False):
        batch = pad_batch([{key: inputs[i]} for i in idx], pad)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            hidden = part(**{key: batch[key].to(device)},
                          attention_mask=batch["attention_mask"].to(device),
                          **extra).last_hidden_state
        for row, i in enumerate(idx):
            out[i] = hidden[row, :len(inputs[i])].to("cpu", dtype).clone()
    return out


@torch.no_grad()
def advance_hidden(lm, hidden: list[torch.Tensor], *, from_top: int, to_top: int,
                   batch_size: int = 16) -> list[torch.Tensor]:
    """States entering the top `to_top` layers, from cached states entering the top `from_top`
    (to_top < from_top): the frozen layers in between run once. One cache then serves every
    k ≤ from_top (06 tries k = 0 and k = 1), at the cost of a layer or two instead of the whole
    bottom of the model."""
    start, stop = check_top_layers(lm, from_top), check_top_layers(lm, to_top)
    if to_top > from_top:
        raise ValueError(f"to_top ({to_top}) must not exceed from_top ({from_top}): layers below "
                         "the cached states cannot be run again from them")
    if lm.family == "encoder":
        part = EncoderTop(lm, start, stop).eval()
    else:
        part = _slice(_inner(lm), start, stop, keep_norm=False).eval()
    dtype = hidden[0].dtype if hidden else torch.float32
    return _run_by_length(lm, part, hidden, "inputs_embeds", batch_size, dtype, "advancing")


def cache_key(lm, top_layers: int, encodings: list[list[int]], dtype: torch.dtype,
              autocast: bool = False) -> dict:
    """What a cache depends on: the model (every weight of the frozen part), the split layer,
    the exact token ids, how the states were computed (autocast) and stored (dtype)."""
    ids = hashlib.sha256()
    for e in encodings:
        ids.update(len(e).to_bytes(4, "little"))
        ids.update(torch.as_tensor(e, dtype=torch.int64).numpy().tobytes())
    weights = hashlib.sha256()
    for name, t in bottom_layers(lm, top_layers).state_dict().items():
        t = t.detach().cpu().contiguous()
        weights.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        weights.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return {"format": CACHE_FORMAT, "model": lm.name, "n_layers": lm.model.config.num_hidden_layers,
            "split_layer": check_top_layers(lm, top_layers), "dtype": str(dtype),
            "autocast": _check_autocast(autocast),
            "tokens_sha256": ids.hexdigest(), "weights_sha256": weights.hexdigest()}


def _load_checked(path: Path, key: dict, encodings: list[list[int]], dim: int):
    """The stored states if the manifest's key matches and every tensor has the expected count,
    shape and dtype; None if there is no cache; ValueError saying what is wrong otherwise."""
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"unreadable manifest ({e})") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"its manifest is not a JSON object (it holds {type(manifest).__name__})")
    if manifest.get("key") != key:
        raise ValueError("its manifest was made for other inputs")
    try:
        hidden = torch.load(path / "hidden.pt", weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError, OSError, ValueError) as e:
        # garbage, an empty file, a truncated zip archive
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ValueError(f"hidden.pt cannot be read ({e.__class__.__name__}: {first})") from None
    if not isinstance(hidden, list) or len(hidden) != len(encodings) \
            or manifest.get("examples") != len(encodings):
        raise ValueError(f"hidden.pt holds {len(hidden) if isinstance(hidden, list) else '?'} "
                         f"states for {len(encodings)} examples")
    for i, (h, e) in enumerate(zip(hidden, encodings)):
        if not isinstance(h, torch.Tensor) or tuple(h.shape) != (len(e), dim) \
                or str(h.dtype) != key["dtype"]:
            raise ValueError(f"state {i} has shape {tuple(getattr(h, 'shape', ()))}, "
                             f"expected {(len(e), dim)} {key['dtype']}")
        if not torch.isfinite(h).all():
            raise ValueError(f"state {i} holds NaN or infinity")
    return hidden


def cached_hidden(lm, top_layers: int, encodings: list[list[int]], *, name: str,
                  batch_size: int = 16, dtype: torch.dtype = torch.float32,
                  autocast: bool = False, folder: Path | None = None,
                  verbose: bool = True) -> list[torch.Tensor]:
    """compute_hidden, stored on disk with a manifest (model weights, layer, token ids, dtype,
    autocast): a later call with the same inputs loads it, whatever `name` it gives (the name
    only labels the folder; notebooks 03, 04 and 05 share one cache of the same prompts; the
    folder, processed_dir()/layer-cache/<name, as a file name>-<digest>, is not printed: one short line each);
    anything different (another template, layer, model or set of examples) builds a new one. A damaged cache (unreadable, or a wrong
    count or shape of states) is rebuilt, never used."""
    key = cache_key(lm, top_layers, encodings, dtype, autocast)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    folder = folder or processed_dir() / "layer-cache"
    # the name only labels the folder: a model named by its path ("/home/me/mine-packed") must
    # not move the cache out of `folder`, nor nest it in sub-folders
    label = re.sub(r"[^A-Za-z0-9_.=+-]+", "_", name).strip("._")[-120:] or "cache"
    path = folder / f"{label}-{digest}"
    if not path.exists():  # the same states made under another name (another notebook's), or
        # under the name as given by an earlier kit (a hub id's '/' made a sub-folder)
        made = [p for p in sorted(folder.glob(f"*-{digest}")) if p.is_dir()]
        before = folder / f"{name}-{digest}"
        if before.resolve().is_relative_to(folder.resolve()) and before.is_dir():
            made.insert(0, before)
        path = made[0] if made else path
    try:
        hidden = _load_checked(path, key, encodings, lm.hidden_size)
    except ValueError as e:
        print(f"{name}: the cache in {path} is not usable ({e}); rebuilding it")
        hidden = None
    if hidden is not None:
        if verbose:
            print(f"{name}: {len(hidden):,} states loaded from the layer cache")
        return hidden
    start = time.perf_counter()
    hidden = compute_hidden(lm, top_layers, encodings, batch_size, dtype, desc=f"caching {name}",
                            autocast=autocast)
    seconds = time.perf_counter() - start
    tokens = sum(len(e) for e in encodings)
    with atomic_dir(path, shared=True) as tmp:  # named by its key: another process's is the same
        torch.save(hidden, tmp / "hidden.pt")
        (tmp / "manifest.json").write_text(json.dumps(
            {"key": key, "examples": len(encodings), "tokens": tokens, "seconds": seconds},
            indent=2) + "\n")
    if verbose:
        print(f"{name}: cached {len(hidden):,} examples ({tokens:,} tokens) in {seconds:.0f} s "
              f"({tokens / max(seconds, 1e-9):,.0f} tokens/s), kept in the layer cache")
    return hidden
