"""Content-based recommenders and ONCE's DIRE (Liu et al., WSDM 2024), notebook 06.

A content-based recommender has three parts:

    content encoder   item text            -> item vector        (NAML, NRMS, or a language model)
    history encoder   clicked item vectors -> user vector        (additive attention, as NAML/NRMS)
    click predictor   user · candidate     -> click score        (dot product)

The "Original" content encoders learn word embeddings from scratch: NAML-style (a CNN over the
words with additive attention, plus a category view) and NRMS-style (multi-head self-attention
over the words, then additive attention). DIRE replaces the content encoder with a pretrained
language model reading the item written by the natural concator; its lower layers are frozen and
their output is cached once per item (llmrec.cache), only the top k layers are trained (optionally
with LoRA), then attention pooling and a projection give the item vector.

Training: each impression shows one clicked item and some unclicked ones; the loss is the
cross-entropy of the softmax over their scores (1 positive + 4 negatives, as in the paper).
"""

from __future__ import annotations

import copy
import math
import re
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .cache import bottom_layers, top_layers_body
from .clicks import ClickData, item_texts
from .lm import LORA_TARGETS, pad_batch
from .metrics import impression_metrics, impression_table
from .training import BestWeights, TrainConfig, seed_everything

WORD = re.compile(r"\w+")


# --------------------------------------------------------------------------- item inputs


class WordItems:
    """Items as word ids (the Original encoders' input): the words of each item's concatenated
    text, lower-cased, up to `max_words`; words seen fewer than `min_count` times map to 1 (unknown),
    0 pads. The category view (NAML) is the item's first category-like field."""

    def __init__(self, data: ClickData, max_words: int = 32, min_count: int = 2,
                 category_field: str | None = None):
        texts = item_texts(data)
        self.ids = list(texts)
        words = {i: WORD.findall(t.lower())[:max_words] for i, t in texts.items()}
        counts = Counter(w for ws in words.values() for w in ws)
        self.vocab = {w: k + 2 for k, w in enumerate(sorted(w for w, c in counts.items()
                                                          if c >= min_count))}
        self.tokens = torch.zeros(len(self.ids), max_words, dtype=torch.long)
        for row, i in enumerate(self.ids):
            seq = [self.vocab.get(w, 1) for w in words[i]]
            self.tokens[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        field = category_field or next((f for f in ("category", "genres") if f in data.items), None)
        cats = (data.items.set_index("item_id")[field].astype(str).str.split(",").str[0].str.strip()
                if field else pd.Series("none", index=data.items["item_id"]))
        names = sorted(set(cats))
        self.n_categories = len(names)
        lookup = dict(zip(names, range(len(names))))
        self.categories = torch.tensor([lookup[cats.get(i, names[0])] for i in self.ids])

    def __len__(self):
        return len(self.ids)

    def batch(self, rows: torch.Tensor) -> dict:
        return {"tokens": self.tokens[rows], "category": self.categories[rows]}


class CachedItems:
    """Items as cached hidden states (DIRE's input): one [length, hidden] tensor per item."""

    def __init__(self, ids: list[str], hidden: list[torch.Tensor]):
        self.ids, self.hidden = ids, hidden

    def __len__(self):
        return len(self.ids)

    def batch(self, rows: torch.Tensor) -> dict:
        return pad_batch([{"inputs_embeds": self.hidden[r]} for r in rows.tolist()])


class TokenItems:
    """Items as token ids for the whole language model (no cache): used to time a training step
    without the cache, and by the cache-equivalence test."""

    def __init__(self, ids: list[str], encodings: list[list[int]], pad_id: int = 0):
        self.ids, self.encodings, self.pad_id = ids, encodings, pad_id

    def __len__(self):
        return len(self.ids)

    def batch(self, rows: torch.Tensor) -> dict:
        return pad_batch([{"input_ids": self.encodings[r]} for r in rows.tolist()], self.pad_id)


def item_encodings(lm, data: ClickData, max_tokens: int = 64) -> tuple[list[str], list[list[int]]]:
    """Every item's natural-concator text, tokenised once (the LM's own tokenizer)."""
    texts = item_texts(data)
    enc = lm.tokenizer(list(texts.values()), truncation=True, max_length=max_tokens)["input_ids"]
    return list(texts), enc


# --------------------------------------------------------------------------- modules


class AdditiveAttention(nn.Module):
    """softmax over positions of q · tanh(W h + b): a learned weighted mean (NAML, NRMS)."""

    def __init__(self, dim: int, query_dim: int = 128):
        super().__init__()
        self.proj = nn.Linear(dim, query_dim)
        self.query = nn.Linear(query_dim, 1, bias=False)

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.query(torch.tanh(self.proj(h))).squeeze(-1)
        if mask is not None:
            logits = logits.masked_fill(~mask.bool(), torch.finfo(logits.dtype).min)
        weights = torch.softmax(logits, dim=-1)
        return (weights.unsqueeze(-1) * h).sum(1)


class NAMLEncoder(nn.Module):
    """NAML-style: word embeddings -> CNN -> additive attention (text view), a category
    embedding (category view), additive attention over the two views."""

    def __init__(self, vocab_size: int, n_categories: int, dim: int = 64, word_dim: int = 100,
                 window: int = 3, dropout: float = 0.2):
        super().__init__()
        self.words = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        self.cnn = nn.Conv1d(word_dim, dim, window, padding=window // 2)
        self.word_attention = AdditiveAttention(dim)
        self.category = nn.Sequential(nn.Embedding(n_categories, word_dim), nn.Linear(word_dim, dim),
                                      nn.ReLU())
        self.view_attention = AdditiveAttention(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens, category):
        x = self.dropout(self.words(tokens))
        h = self.dropout(torch.relu(self.cnn(x.transpose(1, 2)).transpose(1, 2)))
        text = self.word_attention(h, tokens != 0)
        return self.view_attention(torch.stack([text, self.category(category)], dim=1))


class NRMSEncoder(nn.Module):
    """NRMS-style: word embeddings -> multi-head self-attention -> additive attention."""

    def __init__(self, vocab_size: int, dim: int = 64, word_dim: int = 100, heads: int = 4,
                 dropout: float = 0.2, **_):
        super().__init__()
        self.words = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        self.inp = nn.Linear(word_dim, dim)
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.pool = AdditiveAttention(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens, category=None):
        mask = tokens != 0
        x = self.inp(self.dropout(self.words(tokens)))
        h, _ = self.attention(x, x, x, key_padding_mask=~mask, need_weights=False)
        return self.pool(self.dropout(h), mask)


class LMEncoder(nn.Module):
    """DIRE's content encoder: the top `top_layers` layers of a pretrained LM (copies; fed the
    cached states entering them), optional LoRA on them, attention pooling, a projection.
    With `full=True` it reads token ids and runs the frozen lower layers every step too — the
    same computation without the cache, for timing and for the equivalence test."""

    def __init__(self, lm, top_layers: int, dim: int = 64, lora: bool = False, lora_r: int = 8,
                 lora_alpha: int | None = None, full: bool = False):
        super().__init__()

        self.family, self.full = lm.family, full
        self.top = top_layers_body(lm, top_layers)
        for p in self.top.parameters():
            p.requires_grad = top_layers > 0
        if full:
            self.bottom = copy.deepcopy(bottom_layers(lm, top_layers))
            for p in self.bottom.parameters():
                p.requires_grad = False
        if lora and top_layers > 0:
            add_lora_to(self.top, lm, lora_r, lora_alpha or 2 * lora_r)
        hidden = lm.model.config.hidden_size
        self.pool = AdditiveAttention(hidden)
        self.proj = nn.Linear(hidden, dim)

    def forward(self, inputs_embeds=None, attention_mask=None, input_ids=None):
        extra = {"use_cache": False} if self.family == "causal" else {}
        if self.full:
            with torch.no_grad():
                self.bottom.eval()
                inputs_embeds = self.bottom(input_ids=input_ids, attention_mask=attention_mask,
                                            **extra).last_hidden_state
        h = self.top(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                     **extra).last_hidden_state
        return self.proj(self.pool(h, attention_mask))


def add_lora_to(module: nn.Module, lm, r: int, alpha: int, dropout: float = 0.1) -> nn.Module:
    """LoRA adapters (peft) on the attention projections of `module`'s layers, in place; only
    the adapters stay trainable there."""
    # lazy: peft loads only where LoRA is asked for
    from peft import LoraConfig, inject_adapter_in_model

    targets = LORA_TARGETS.get(lm.model_type)
    if not targets:
        raise ValueError(f"no LoRA target modules known for model type {lm.model_type!r}")
    inject_adapter_in_model(LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout,
                                       target_modules=targets, bias="none"), module)
    for name, p in module.named_parameters():
        p.requires_grad = "lora_" in name
    return module


class ClickModel(nn.Module):
    """Content encoder + additive-attention history encoder + dot-product click predictor."""

    def __init__(self, encoder: nn.Module, dim: int):
        super().__init__()
        self.encoder = encoder
        self.history = AdditiveAttention(dim)
        self.no_history = nn.Parameter(torch.zeros(dim))  # the user vector of an empty history

    def encode_items(self, inputs: dict, chunk: int = 64) -> torch.Tensor:
        """Item vectors. Padded sequences (language models) are encoded in chunks of similar
        length, each cut to its own longest item, so little compute goes to padding."""
        mask = inputs.get("attention_mask")
        if mask is None or len(mask) <= chunk:
            return self.encoder(**inputs)
        lengths = mask.sum(1)
        order = torch.argsort(lengths, stable=True)
        parts = []
        for s in range(0, len(order), chunk):
            rows = order[s:s + chunk]
            width = int(lengths[rows].max())
            parts.append(self.encoder(**{k: v[rows, :width] for k, v in inputs.items()}))
        out = torch.empty(len(order), parts[0].shape[-1], dtype=parts[0].dtype)
        return out.index_copy(0, order, torch.cat(parts))

    def user_vectors(self, item_vecs: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """history: [B, H] rows into item_vecs, -1 = padding."""
        mask = history >= 0
        h = item_vecs[history.clamp(min=0)]
        users = self.history(h, mask)
        empty = ~mask.any(1)
        return torch.where(empty.unsqueeze(1), self.no_history.expand_as(users), users)

    def forward(self, inputs: dict, history: torch.Tensor, candidates: torch.Tensor):
        item_vecs = self.encode_items(inputs)
        users = self.user_vectors(item_vecs, history)
        return (users.unsqueeze(1) * item_vecs[candidates]).sum(-1)  # [B, C] click scores


def build_encoder(kind: str, items, *, lm=None, dim: int = 64, top_layers: int = 1,
                  lora: bool = False, lora_r: int = 8, lora_alpha: int | None = None,
                  full: bool = False) -> nn.Module:
    if kind == "NAML":
        return NAMLEncoder(len(items.vocab) + 2, items.n_categories, dim=dim)
    if kind == "NRMS":
        return NRMSEncoder(len(items.vocab) + 2, dim=dim)
    if kind == "DIRE":
        if lm is None:
            raise ValueError("a DIRE encoder needs the loaded language model (lm=...)")
        return LMEncoder(lm, top_layers, dim=dim, lora=lora, lora_r=lora_r, lora_alpha=lora_alpha,
                         full=full)
    raise ValueError(f"unknown content encoder {kind!r}; use 'NAML', 'NRMS' or 'DIRE'")


# --------------------------------------------------------------------------- batches


def _index(items) -> dict[str, int]:
    return {i: k for k, i in enumerate(items.ids)}


def _history_rows(histories: list[list[int]]) -> torch.Tensor:
    """Rows of item positions, right-padded with -1 (at least one column)."""
    out = torch.full((len(histories), max(max(map(len, histories), default=0), 1)), -1,
                     dtype=torch.long)
    for b, h in enumerate(histories):
        out[b, :len(h)] = torch.tensor(h, dtype=torch.long)
    return out


def make_batch(impressions: pd.DataFrame, items, index: dict[str, int], history_len: int):
    """The unique items of a batch of impressions, their inputs, and the history/candidate
    positions into them (-1 pads a short history)."""
    rows = []
    for h, c in zip(impressions["history"], impressions["candidates"]):
        rows += [index[i] for i in h[-history_len:]] + [index[i] for i in c]
    unique, inverse = np.unique(np.asarray(rows, dtype=np.int64), return_inverse=True)
    pos = iter(inverse.tolist())
    hists, cands = [], []
    for h, c in zip(impressions["history"], impressions["candidates"]):
        hists.append([next(pos) for _ in h[-history_len:]])
        cands.append([next(pos) for _ in c])
    return (items.batch(torch.as_tensor(unique)), _history_rows(hists),
            torch.tensor(cands, dtype=torch.long))


# --------------------------------------------------------------------------- train / evaluate


@dataclass
class ClickConfig(TrainConfig):
    """The baselines' TrainConfig with the click model's defaults and its history length."""

    epochs: int = 2
    batch_size: int = 32
    lr: float = 1e-3
    patience: int = 1
    history_len: int = 10
    lm_lr: float | None = None  # the language model's own tuned weights (not LoRA's); None: lr
    autocast: bool = False  # the steps in bf16 autocast (PRECISION's choice for the encoder's model)


@torch.no_grad()
def score_impressions(model: ClickModel, items, impressions: pd.DataFrame, history_len: int,
                      chunk: int = 256, autocast: bool = False) -> list[np.ndarray]:
    """Click scores of every candidate of every impression. Each needed item is encoded once
    (in bf16 autocast with `autocast`)."""
    model.eval()
    index = _index(items)
    needed = sorted({index[i] for h, c in zip(impressions["history"], impressions["candidates"])
                     for i in list(h[-history_len:]) + list(c)})
    vecs = torch.zeros(len(items), model.history.proj.in_features)
    for s in range(0, len(needed), chunk):
        rows = torch.tensor(needed[s:s + chunk])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            vecs[rows] = model.encode_items(items.batch(rows)).float()
    out = []
    for s in range(0, len(impressions), chunk):
        part = impressions.iloc[s:s + chunk]
        history = _history_rows([[index[i] for i in h[-history_len:]] for h in part["history"]])
        users = model.user_vectors(vecs, history)
        for u, c in zip(users, part["candidates"]):
            out.append((vecs[[index[i] for i in c]] @ u).numpy())
    return out


def evaluate(model: ClickModel, items, impressions: pd.DataFrame, history_len: int,
             per_impression: bool = False, autocast: bool = False):
    """AUC, MRR, nDCG@5 and nDCG@10 averaged over the impressions; with per_impression, the
    table of each impression's values instead (for intervals over impressions)."""
    scores = score_impressions(model, items, impressions, history_len, autocast=autocast)
    if per_impression:
        return impression_table(list(impressions["labels"]), scores)
    return impression_metrics(list(impressions["labels"]), scores)


def parameter_groups(model: ClickModel, lm_lr: float | None = None) -> list[dict]:
    """The trained parameters, as Adam's groups: the language model's own tuned weights at
    `lm_lr` (ONCE: 1e-5 without LoRA), everything else (LoRA adapters, pooling, projection, the
    history encoder) at the optimiser's learning rate. lm_lr None: one group."""
    top = getattr(model.encoder, "top", None)
    lm_own = set()
    if lm_lr is not None and top is not None:
        lm_own = {id(p) for n, p in top.named_parameters() if p.requires_grad and "lora_" not in n}
    trained = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in trained if id(p) not in lm_own]}]
    if lm_own:
        groups.append({"params": [p for p in trained if id(p) in lm_own], "lr": lm_lr})
    return groups


def train_click_model(model: ClickModel, items, train: pd.DataFrame, val: pd.DataFrame,
                      config: ClickConfig, desc: str = "training") -> pd.DataFrame:
    """Adam on the softmax cross-entropy over each impression's candidates (one of them clicked:
    `training_samples` shapes them so); validation AUC after each epoch; the best epoch's
    weights are kept (early stopping).
    Returns the history: epoch, step, examples_seen, train_loss, val_auc, seconds."""
    seed_everything(config.seed)
    index = _index(items)
    optimiser = torch.optim.Adam(parameter_groups(model, config.lm_lr), lr=config.lr,
                                 weight_decay=config.weight_decay)
    generator = np.random.default_rng(config.seed)
    rows, step, start = [], 0, time.perf_counter()
    keeper = BestWeights(config.patience, higher_is_better=True)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = config.epochs * steps_per_epoch
    if config.max_steps:
        total = min(total, config.max_steps)
    bar = tqdm(total=total, desc=desc, unit="step", leave=False)
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = generator.permutation(len(train))
        losses = []
        for s in range(0, len(order), config.batch_size):
            part = train.iloc[order[s:s + config.batch_size]]
            inputs, history, cands = make_batch(part, items, index, config.history_len)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.autocast):
                scores = model(inputs, history, cands)
            target = torch.tensor([labels.index(1) for labels in part["labels"]])
            loss = nn.functional.cross_entropy(scores.float(), target)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
            step += 1
            bar.update()
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
            if config.max_steps and step >= config.max_steps:
                break
        val_auc = evaluate(model, items, val, config.history_len, autocast=config.autocast)["auc"]
        rows.append({"epoch": epoch, "step": step, "examples_seen": step * config.batch_size,
                     "train_loss": float(np.mean(losses)), "val_auc": val_auc,
                     "seconds": time.perf_counter() - start})
        if keeper.update(model, val_auc, epoch) or (config.max_steps and step >= config.max_steps):
            break
    bar.close()
    keeper.restore(model)
    return pd.DataFrame(rows)


def time_encoder_steps(encoder: nn.Module, items, n_items: int = 64, steps: int = 5,
                       lr: float = 1e-4, seed: int = 0) -> list[float]:
    """Seconds of each training step of a content encoder alone (forward, backward, Adam step)
    on batches of `n_items` items: the cost caching changes. One warm-up step is not counted."""
    rng = np.random.default_rng(seed)
    params = [p for p in encoder.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=lr)
    encoder.train()
    times = []
    for s in range(steps + 1):
        rows = torch.as_tensor(rng.choice(len(items), n_items, replace=False))
        inputs = items.batch(rows)
        start = time.perf_counter()
        loss = encoder(**inputs).pow(2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if s:
            times.append(time.perf_counter() - start)
    return times
