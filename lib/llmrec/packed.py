"""One causal pass per user, every rating a target: the kit's packed formulation.

Kang et al. give the model one prompt per (history, candidate) pair, so a user with 20 ratings
costs 20 prompts that repeat the same history. A decoder-only model can instead read the user's
time-ordered ratings once, as one text —

    A user's movie ratings, oldest first (1 = lowest, 5 = highest):
    Toy Story (1995): 4
    Heat (1995): 5
    …

— and predict every rating from the state at the token just before its digit (the rating
*slot*). Causal attention makes that state depend only on the text before it: the same user's
earlier ratings, which is the history Kang et al.'s prompt gives, and nothing later. So the state
at a slot equals the state of the same text run alone as a prompt (tests/test_packed.py checks
it), and the shared prefix is computed once instead of once per target. Sequential recommenders
train this way (SASRec, HSTU): every position of a sequence is a training example.

The frozen bottom layers run once per token (llmrec.cache, keyed by content, so notebooks 03-05
share one cache); the top layers and a rating head train over whole sequences with a loss at every
training slot. Validation and test ratings sit at the end of each sequence (both of the kit's
splits put them after the user's training ratings in time): their slots are predicted, never in
the loss, and training sequences are cut after their last training slot.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import Subset

from .baselines import BASELINE_SETTINGS, fit_baseline, predict_baseline
from .cache import top_layers_body
from .lm import LoadedLM, RatingModel, add_lora, pad_batch, rating_token_ids
from .prompts import item_genres, item_title
from .training import TrainConfig, predict_dataset

HEADER = "A user's {item_word} ratings, oldest first (1 = lowest, 5 = highest):"
LINE = "{title}: {rating}"  # {title} "Toy Story (1995)", {name} "Toy Story", {genres}
ITEM_WORDS = {"movielens-small": "movie", "ml-1m": "movie", "ml-100k": "movie",
              "amazon-books": "book"}


@dataclass
class PackedSequences:
    """Users' ratings as token sequences.

    token_ids: one list of token ids per sequence.
    slots:     one row per rating line: seq (which sequence), line (its index in the sequence),
               slot (the token whose state predicts the rating: the one before the digit),
               user_idx, item_idx, position (within the user), timestamp, rating, split, and
               target (a training slot that enters the loss: a train rating with at least
               `min_context` earlier ratings in its sequence, counted in one sequence only).
    texts:     the text of each sequence (what the model reads).
    """

    token_ids: list[list[int]]
    slots: pd.DataFrame
    texts: list[str]

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def n_tokens(self) -> int:
        return sum(len(t) for t in self.token_ids)

    def targets(self, split: str) -> pd.DataFrame:
        """The slots scored for `split`: training targets, or every val/test slot."""
        if split == "train":
            return self.slots[self.slots["target"]]
        if split not in ("val", "test"):
            raise ValueError(f"unknown split {split!r}; use 'train', 'val' or 'test'")
        return self.slots[(self.slots["split"] == split) & self.slots["owned"]]

    def slots_for(self, examples: pd.DataFrame) -> pd.DataFrame:
        """The slots of `examples` (rows of processed.examples), in their order: predictions
        then line up with every other model's on the same test users."""
        owned = self.slots[self.slots["owned"]].reset_index().set_index(["user_idx", "position"])
        keys = list(zip(examples["user_idx"], examples["position"]))
        missing = [k for k in keys if k not in owned.index]
        if missing:
            raise ValueError(f"{len(missing)} of {len(keys)} examples have no slot in these "
                             f"sequences (user_idx, position: {missing[:3]}); build them from the "
                             "same processed split, without `users`")
        return self.slots.loc[owned.loc[keys, "index"].to_numpy()]

    def __repr__(self) -> str:
        counts = {s: len(self.targets(s)) for s in ("train", "val", "test")}
        return (f"PackedSequences({len(self):,} sequences, {self.n_tokens:,} tokens; targets "
                f"train {counts['train']:,} / val {counts['val']:,} / test {counts['test']:,})")


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer ≥ {low}, got {value!r}")
    return int(value)


def _chunks(n: int, max_lines: int, overlap: int) -> list[tuple[int, int, int]]:
    """(start, stop, first_owned) line ranges covering 0..n: each chunk after the first repeats
    the `overlap` lines before it as context, so every line is owned by exactly one chunk."""
    out, start = [], 0
    while True:
        stop = min(n, start + max_lines)
        out.append((start, stop, 0 if start == 0 else start + overlap))
        if stop >= n:
            return out
        start = stop - overlap


def build_sequences(processed, tokenizer, *, window: int | None = 20, min_context: int = 3,
                    max_lines: int = 64, overlap: int = 16, header: str = HEADER,
                    line: str = LINE, users=None) -> PackedSequences:
    """One sequence per user (more for a long one): the user's last `window` training ratings
    (None: all of them) and every later rating, oldest first, one `line` per rating under
    `header`. A user with more than `max_lines` such ratings is cut into chunks of `max_lines`
    lines, each after the first starting with the `overlap` lines before it as context.

    Training ratings with at least `min_context` earlier lines in their sequence are targets;
    validation and test ratings are always scored. `users`: user_idx values to keep (None: all).
    """
    if window is not None:
        window = _check_int("window", window, 1)
    min_context = _check_int("min_context", min_context, 0)
    max_lines = _check_int("max_lines", max_lines, 2)
    overlap = _check_int("overlap", overlap, 0)
    if overlap >= max_lines:
        raise ValueError(f"overlap ({overlap}) must be smaller than max_lines ({max_lines})")
    if "{rating}" not in line:
        raise ValueError(f"line {line!r} must contain {{rating}}")
    if not line.rstrip().endswith("{rating}"):
        raise ValueError(f"line {line!r} must end with {{rating}}: the rating is the last thing "
                         "on its line, so that its slot state has read the whole item")
    ids = rating_token_ids(tokenizer)
    item_word = ITEM_WORDS.get(processed.manifest["params"]["dataset"], "item")
    head = header.format(item_word=item_word)
    items = processed.items.set_index("item_idx")
    titles = {i: item_title(t, y) for i, t, y in zip(items.index, items["title"], items["year"])}
    names = {i: str(t) for i, t in zip(items.index, items["title"])}
    genres = {i: item_genres(g) for i, g in zip(items.index, items["genres"])}

    r = processed.ratings.sort_values(["user_idx", "position"], kind="stable")
    if users is not None:
        r = r[r["user_idx"].isin(set(users))]
    token_ids, texts, rows = [], [], []
    for user, g in r.groupby("user_idx", sort=True):
        is_train = (g["split"] == "train").to_numpy()
        train_at = np.flatnonzero(is_train)
        first = 0 if window is None or len(train_at) <= window else train_at[-window]
        kept = g.iloc[first:]
        for start, stop, owned_from in _chunks(len(kept), max_lines, overlap):
            part = kept.iloc[start:stop]
            text, digit_at = head, []
            for item, rating in zip(part["item_idx"].to_numpy(), part["rating"].to_numpy()):
                body = line.format(title=titles[item], name=names[item], genres=genres[item],
                                   rating=int(rating))
                rating_pos = body.rindex(str(int(rating)))
                text += "\n"
                digit_at.append(len(text) + rating_pos)
                text += body
            enc = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
            offsets = {s: j for j, (s, e) in enumerate(enc["offset_mapping"]) if e == s + 1}
            seq = len(token_ids)
            for k, (row, at) in enumerate(zip(part.itertuples(index=False), digit_at)):
                j = offsets.get(at)
                if j is None or enc["input_ids"][j] != ids[int(row.rating) - 1]:
                    raise ValueError(
                        f"the tokenizer {type(tokenizer).__name__} does not make the rating "
                        f"digit of line {k} of user {user} a token of its own ({text!r}); the "
                        "packed formulation reads the state before the digit. Use a line format "
                        "where the rating follows a space or a colon, or another model.")
                owned = start + k >= owned_from
                rows.append({"seq": seq, "line": k, "slot": j - 1, "user_idx": user,
                             "item_idx": row.item_idx, "position": row.position,
                             "timestamp": row.timestamp, "rating": row.rating,
                             "split": row.split, "owned": owned,
                             # k: the user's earlier ratings this sequence shows before the line
                             "target": bool(owned and row.split == "train" and k >= min_context)})
            token_ids.append(list(enc["input_ids"]))
            texts.append(text)
    slots = pd.DataFrame(rows, columns=["seq", "line", "slot", "user_idx", "item_idx", "position",
                                        "timestamp", "rating", "split", "owned", "target"])
    return PackedSequences(token_ids, slots, texts)


def bias_offsets(processed, slots: pd.DataFrame, damping: float = 5.0) -> np.ndarray:
    """The damped user + item bias baseline (baselines.heuristic_predictions' "user + item
    bias") for each slot, from training ratings only. For a training slot it is computed as if
    its own rating were not there — the global mean, its item's bias and its user's bias all
    without it, exactly (tests/test_packed.py compares with the heuristic refitted without the
    row) — so a regression head that learns the residual over it never reads its target.

    With the bias of item j, b_j = (R_j − n_j·μ) / (n_j + λ) (R_j: the sum of its ratings), the
    user's bias is b_u = (A_u − μ·B_u) / (n_u + λ), where A_u sums r − R_j/(n_j + λ) and B_u sums
    λ/(n_j + λ) over the user's ratings: leaving one rating out is a subtraction from each sum."""
    train = processed.train_ratings()
    r_all = train["rating"].to_numpy(dtype=float)
    total, n = r_all.sum(), len(r_all)
    item_sum = train.groupby("item_idx")["rating"].sum()
    item_n = train.groupby("item_idx").size()
    j_sum = train["item_idx"].map(item_sum).to_numpy()
    j_n = train["item_idx"].map(item_n).to_numpy()
    a = pd.Series(r_all - j_sum / (j_n + damping)).groupby(train["user_idx"].to_numpy()).sum()
    b = pd.Series(damping / (j_n + damping)).groupby(train["user_idx"].to_numpy()).sum()
    user_n = train.groupby("user_idx").size()

    own = (slots["split"] == "train").to_numpy()
    r = np.where(own, slots["rating"].to_numpy(dtype=float), 0.0)
    items, users = slots["item_idx"], slots["user_idx"]
    i_sum = items.map(item_sum).fillna(0).to_numpy()
    i_n = items.map(item_n).fillna(0).to_numpy()
    mu = (total - r) / (n - own)
    b_i = (i_sum - r - (i_n - own) * mu) / (i_n - own + damping)
    # the slot's own term of A_u and B_u, computed with its item's full sums, taken out
    a_own = np.where(own, r - i_sum / (i_n + damping), 0.0)
    b_own = np.where(own, damping / (i_n + damping), 0.0)
    u_a = users.map(a).fillna(0).to_numpy() - a_own
    u_b = users.map(b).fillna(0).to_numpy() - b_own
    u_n = users.map(user_n).fillna(0).to_numpy() - own
    return mu + (u_a - mu * u_b) / (u_n + damping) + b_i


def mf_offsets(processed, slots: pd.DataFrame, *, folds: int = 5, seed: int = 0,
               max_steps: int | None = None):
    """MF's prediction for each slot (notebook 02's MF and settings), cross-fitted: the training
    ratings are split in `folds` folds (by user and position), and a training slot's offset comes
    from the MF trained without its fold, so a head that learns the residual over it never reads
    its target through MF. Validation and test slots get the MF trained on every training rating
    — the same model as the MF row of the tables. Returns (offsets, that MF)."""
    folds = _check_int("folds", folds, 2)
    setting = BASELINE_SETTINGS["MF"]
    config = TrainConfig(seed=seed, max_steps=max_steps, **setting["train"])
    full, _ = fit_baseline("MF", processed, config, setting["model"])
    ratings = processed.train_ratings()

    def fold_of(df):  # a fixed hash of (user, position): the same fold in every run
        return (df["user_idx"].to_numpy(np.int64) * 7919 + df["position"].to_numpy(np.int64) * 104729) % folds

    offsets = predict_baseline(full, processed, slots).astype(float)
    own, slot_fold, rating_fold = (slots["split"] == "train").to_numpy(), fold_of(slots), fold_of(ratings)
    for k in range(folds):
        pick = own & (slot_fold == k)
        if pick.any():
            model, _ = fit_baseline("MF", processed, config, setting["model"],
                                    train_examples=ratings[rating_fold != k])
            offsets[pick] = predict_baseline(model, processed, slots[pick])
    return offsets, full


# --------------------------------------------------------------------------- model and data


class PackedRatingModel(RatingModel):
    """RatingModel read at every rating slot of a sequence instead of at the last token.

    The inputs are whole sequences (token ids, or cached states entering the top layers) and
    `slot_index` [batch, slots], the token positions to read (-1: padding). Classification: the
    five logits of "1".."5" at each slot (initialised from the LM head's rows, so the untrained
    model is the pretrained one); regression: one number per slot, plus `offsets` (e.g. the
    user + item biases) when given, so the head learns the residual.
    """

    def __init__(self, lm: LoadedLM, head: str = "classification", body: nn.Module | None = None,
                 init_rating: float = 3.5):
        if lm.family != "causal":
            raise ValueError(f"the packed formulation needs a decoder-only model (causal "
                             f"attention); {lm.name!r} is {lm.family}")
        super().__init__(lm, head, body=body, init_rating=init_rating)

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, slot_index=None,
                labels=None, offsets=None):
        hidden = self.backbone(input_ids=input_ids, inputs_embeds=inputs_embeds,
                               attention_mask=attention_mask, use_cache=False).last_hidden_state
        valid = slot_index >= 0
        rows = torch.arange(hidden.shape[0], device=hidden.device).unsqueeze(1)
        states = hidden[rows, slot_index.clamp(min=0)]  # [batch, slots, dim]
        scores = self.score(states)
        if self.head == "regression":
            scores = scores.squeeze(-1)
            if offsets is not None:
                scores = scores + offsets
        loss = None
        if labels is not None:
            mask = valid & (labels > 0)  # 0: a slot read for prediction only
            if self.head == "classification":
                loss = nn.functional.cross_entropy(scores[mask].float(), labels[mask].long() - 1)
            else:
                loss = nn.functional.mse_loss(scores[mask].float(), labels[mask].float())
        return {"loss": loss, "logits": scores}


class PackedDataset(torch.utils.data.Dataset):
    """The sequences that hold at least one of `slots` (rows of PackedSequences.slots), each with
    the positions to read, their ratings and offsets. With `cut` a sequence ends at its last
    selected slot: the text after it cannot change those states (causal attention), so it is not
    computed. `order` maps the model's outputs back to the rows of `slots`."""

    def __init__(self, inputs: list, slots: pd.DataFrame, *, offsets=None, key: str = "inputs_embeds",
                 cut: bool = True):
        self.inputs, self.key, self.cut = inputs, key, cut
        offsets = np.zeros(len(slots)) if offsets is None else np.asarray(offsets, dtype=float)
        if len(offsets) != len(slots):
            raise ValueError(f"{len(offsets)} offsets for {len(slots)} slots")
        frame = slots.assign(_row=np.arange(len(slots)), _offset=offsets)
        self.items, self.order = [], []
        for seq, g in frame.groupby("seq", sort=True):
            self.items.append((int(seq), torch.tensor(g["slot"].to_numpy(), dtype=torch.long),
                               torch.tensor(g["rating"].to_numpy(dtype=float), dtype=torch.float32),
                               torch.tensor(g["_offset"].to_numpy(), dtype=torch.float32)))
            self.order.extend(g["_row"].tolist())
        self.order = np.asarray(self.order, dtype=int)

    def __len__(self):
        return len(self.items)

    def lengths(self) -> np.ndarray:
        """Tokens per item, as __getitem__ gives them (cut after the last selected slot)."""
        return np.array([int(slot.max()) + 1 if self.cut else len(self.inputs[seq])
                         for seq, slot, _, _ in self.items])

    def __getitem__(self, i):
        seq, slot, rating, offset = self.items[i]
        x = self.inputs[seq]
        if self.cut:
            x = x[:int(slot.max()) + 1]
        return {self.key: x, "slot_index": slot, "labels": rating, "offsets": offset}


def collate_packed(features: list[dict], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """lm.pad_batch's right padding of the sequences (positions 0..T-1 stay those of the full
    model), plus the slot lists padded with -1 and their ratings and offsets with 0."""
    key = "inputs_embeds" if "inputs_embeds" in features[0] else "input_ids"
    batch = pad_batch([{key: f[key]} for f in features], pad_id)
    width = max(len(f["slot_index"]) for f in features)
    batch["slot_index"] = torch.full((len(features), width), -1, dtype=torch.long)
    batch["labels"] = torch.zeros(len(features), width)
    batch["offsets"] = torch.zeros(len(features), width)
    for b, f in enumerate(features):
        s = len(f["slot_index"])
        batch["slot_index"][b, :s] = f["slot_index"]
        batch["labels"][b, :s] = f["labels"]
        batch["offsets"][b, :s] = f["offsets"]
    return batch


def build_packed_model(lm: LoadedLM, head: str, *, top_layers: int | None = 2,
                       lora: bool = False, lora_r: int = 8, init_rating: float = 3.5):
    """A PackedRatingModel over the top `top_layers` layers (fed from the cache) or the whole
    model (None), optionally with LoRA adapters."""
    # a copy either way: training never changes the loaded model, so 04's second model (or a
    # zero-shot run after it) starts from the pretrained weights again
    body = (top_layers_body(lm, top_layers) if top_layers is not None
            else copy.deepcopy(lm.model.base_model))
    model = PackedRatingModel(lm, head, body=body, init_rating=init_rating)
    if lora:
        model = add_lora(model, lm, r=lora_r, alpha=2 * lora_r)
    return model


def predict_packed(model, dataset: PackedDataset, collator=None, batch_size: int = 8,
                   desc: str = "predicting", autocast: bool = False):
    """Expected ratings and raw scores at every slot of `dataset`, in the order of the slots it
    was built from: training.predict_dataset over the sequences, shortest first (a batch of
    similar lengths carries little padding: about 18% fewer tokens on the laptop preset's
    sequences), then put back in order."""
    by_length = np.argsort(dataset.lengths(), kind="stable")
    pred, score = predict_dataset(model, Subset(dataset, by_length.tolist()), collator or collate_packed,
                                  batch_size, desc, autocast)
    counts = np.array([len(item[1]) for item in dataset.items])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int)
    rows = np.concatenate([dataset.order[starts[i]:starts[i] + counts[i]] for i in by_length])
    back = np.empty_like(rows)
    back[rows] = np.arange(len(rows))
    return pred[back], score[back]


FORMULATIONS = ("packed", "prompt")
SEQ2SEQ_NAMES = ("tiny-t5", "flan-t5", "google/flan-t5", "t5-", "google/t5")


def check_formulation(formulation: str, model: str) -> str:
    """FORMULATION is "packed" or "prompt", and packed goes with a decoder-only model: said in
    seconds, before any data or model is loaded (a hub model's family is checked again when it
    loads)."""
    if formulation not in FORMULATIONS:
        raise ValueError(f"FORMULATION must be one of {FORMULATIONS}, got {formulation!r}")
    if formulation == "packed" and str(model).startswith(SEQ2SEQ_NAMES):
        raise ValueError(f"FORMULATION = 'packed' needs a decoder-only model; {model!r} is an "
                         "encoder-decoder (seq2seq) model. Use FORMULATION = 'prompt' with it "
                         "(Kang et al.'s one prompt per example), or a decoder-only MODEL such as "
                         "smollm2-135m.")
    return formulation
