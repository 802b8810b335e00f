"""Kang et al.'s baselines: heuristics, biased MF, an MLP over user/item embeddings, and a
Transformer+MLP that reads the same history as the language model's prompt.

Every model predicts the rating class 1–5 of a row of `Processed.examples`. MF and the MLP learn
from all training ratings (user, item pairs); the Transformer+MLP learns from training examples
(history + candidate), exactly what the LM will see.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import torch
from torch import nn

from .metrics import rating_metrics, rmse
from .splits import Processed
from .training import TrainConfig, TrainResult, predict, seed_everything, train_regressor

# --------------------------------------------------------------------------- heuristics


def heuristic_predictions(processed: Processed, examples: pd.DataFrame,
                          damping: float = 5.0) -> dict[str, np.ndarray]:
    """Predictions of the heuristics for `examples`, learned from training ratings only.

    - global average: the mean training rating;
    - item average: the candidate's mean training rating (global mean for unseen items);
    - user average: the user's mean training rating;
    - user + item bias: global mean + damped user and item offsets (shrunk towards 0 by `damping`
      pseudo-ratings), the classic baseline that MF has to improve on.
    """
    train = processed.train_ratings()
    mu = train["rating"].mean()
    item_mean = train.groupby("item_idx")["rating"].mean()
    user_mean = train.groupby("user_idx")["rating"].mean()
    item_bias = train.groupby("item_idx")["rating"].agg(lambda r: (r - mu).sum() / (len(r) + damping))
    resid = train["rating"] - mu - train["item_idx"].map(item_bias).to_numpy()
    user_bias = resid.groupby(train["user_idx"]).agg(lambda r: r.sum() / (len(r) + damping))
    users, items = examples["user_idx"], examples["item_idx"]
    return {
        "global average": np.full(len(examples), mu),
        "item average": items.map(item_mean).fillna(mu).to_numpy(),
        "user average": users.map(user_mean).fillna(mu).to_numpy(),
        "user + item bias": (mu + users.map(user_bias).fillna(0).to_numpy()
                             + items.map(item_bias).fillna(0).to_numpy()),
    }



def better_average(processed: Processed) -> str:
    """"user average" or "item average": the one with the lower RMSE on the validation split, the
    opponent a model that learned anything must beat (notebooks 03 and 04)."""
    val = processed.split("val")
    heuristics = heuristic_predictions(processed, val)
    return min(("user average", "item average"), key=lambda h: rmse(val["rating"], heuristics[h]))


# --------------------------------------------------------------------------- tensors


def to_tensors(processed: Processed, df: pd.DataFrame) -> dict[str, torch.Tensor]:
    """The columns the models read, as tensors. Works for examples and for plain ratings (whose
    history is then empty: MF and the MLP do not look at it)."""
    out = {
        "user": torch.tensor(df["user_idx"].to_numpy(), dtype=torch.long),
        "item": torch.tensor(df["item_idx"].to_numpy(), dtype=torch.long),
        "target": torch.tensor(df["rating"].to_numpy(), dtype=torch.float32),
    }
    if "hist_item_0" in df:
        out["hist_item"] = torch.tensor(processed.hist_items(df), dtype=torch.long)
        out["hist_rating"] = torch.tensor(processed.hist_ratings(df), dtype=torch.long)
    return out


def genre_matrix(items: pd.DataFrame) -> tuple[torch.Tensor, list[str]]:
    """Multi-hot genres per item_idx (row 0 is padding)."""
    names = sorted({g for gs in items["genres"] for g in str(gs).split("|") if g})
    col = {g: j for j, g in enumerate(names)}
    mat = torch.zeros(int(items["item_idx"].max()) + 1, max(len(names), 1))
    for idx, gs in zip(items["item_idx"], items["genres"]):
        for g in str(gs).split("|"):
            if g:
                mat[idx, col[g]] = 1.0
    return mat, names


# --------------------------------------------------------------------------- models


class BiasedMF(nn.Module):
    """rating ≈ μ + b_u + b_i + p_u · q_i, with L2 on the rows a batch touches."""

    def __init__(self, n_users: int, n_items: int, dim: int = 8, reg: float = 0.05,
                 global_mean: float = 3.5):
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items + 1, dim)
        self.user_bias = nn.Embedding(n_users, 1)
        self.item_bias = nn.Embedding(n_items + 1, 1)
        for emb in (self.user, self.item):
            nn.init.normal_(emb.weight, std=0.05)
        for emb in (self.user_bias, self.item_bias):
            nn.init.zeros_(emb.weight)
        self.register_buffer("mu", torch.tensor(float(global_mean)))
        self.reg = reg

    def forward(self, batch):
        u, i = batch["user"], batch["item"]
        dot = (self.user(u) * self.item(i)).sum(-1)
        return self.mu + self.user_bias(u).squeeze(-1) + self.item_bias(i).squeeze(-1) + dot

    def penalty(self, batch):
        u, i = batch["user"], batch["item"]
        sq = (self.user(u).pow(2).sum(-1) + self.item(i).pow(2).sum(-1)
              + self.user_bias(u).squeeze(-1).pow(2) + self.item_bias(i).squeeze(-1).pow(2))
        return self.reg * sq.mean()


class TextAwareMF(BiasedMF):
    """Biased MF whose item vector and item bias also read a frozen language model's embedding
    t_i of the item's text ("Title (year): genres"):

        rating ≈ μ + b_u + (b_i + w·t_i) + p_u · (q_i + W t_i)

    W and w start at zero, so training starts from plain MF. An item with few ratings still gets
    a vector from its text, and its text is shared with similar items. ONCE's idea — encode each
    item once with a frozen LM — carried to rating prediction: the LM's knowledge at MF's cost.
    It is the kit's own model, not one of the papers'.
    """

    def __init__(self, n_users: int, n_items: int, item_text: torch.Tensor, dim: int = 8,
                 reg: float = 0.05, global_mean: float = 3.5):
        super().__init__(n_users, n_items, dim, reg, global_mean)
        if item_text.ndim != 2 or item_text.shape[0] != n_items + 1:
            raise ValueError(f"item_text must have one row per item_idx 0..{n_items} "
                             f"({n_items + 1} rows); got shape {tuple(item_text.shape)}")
        self.register_buffer("item_text", item_text.float())
        self.text_vector = nn.Linear(item_text.shape[1], dim, bias=False)
        self.text_bias = nn.Linear(item_text.shape[1], 1, bias=False)
        for layer in (self.text_vector, self.text_bias):
            nn.init.zeros_(layer.weight)

    def forward(self, batch):
        u, i = batch["user"], batch["item"]
        text = self.item_text[i]
        item_vector = self.item(i) + self.text_vector(text)
        item_bias = self.item_bias(i).squeeze(-1) + self.text_bias(text).squeeze(-1)
        return self.mu + self.user_bias(u).squeeze(-1) + item_bias + (self.user(u) * item_vector).sum(-1)


class MLPRecommender(nn.Module):
    """The "MLP" baseline: concatenated user and item embeddings through a small MLP."""

    def __init__(self, n_users: int, n_items: int, dim: int = 32, hidden: int = 64,
                 dropout: float = 0.2, global_mean: float = 3.5):
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items + 1, dim)
        self.mlp = nn.Sequential(nn.Linear(2 * dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.register_buffer("mu", torch.tensor(float(global_mean)))

    def forward(self, batch):
        x = torch.cat([self.user(batch["user"]), self.item(batch["item"])], dim=-1)
        return self.mu + self.mlp(x).squeeze(-1)


class TransformerMLP(nn.Module):
    """The "Transformer+MLP" baseline: reads what the LM's prompt says, as ids instead of words.

    Tokens: the candidate, then the history items (most recent first). Each token is the sum of
    an item embedding, a projection of its multi-hot genres, a rating embedding (1–5 for history
    items, a special "?" for the candidate) and a position embedding. A Transformer encoder mixes
    them; an MLP reads the candidate's output and predicts the rating.
    """

    def __init__(self, n_items: int, item_genres: torch.Tensor, history_len: int, dim: int = 64,
                 heads: int = 4, layers: int = 2, dropout: float = 0.1, global_mean: float = 3.5):
        super().__init__()
        self.register_buffer("item_genres", item_genres)
        self.item = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.genres = nn.Linear(item_genres.shape[1], dim, bias=False)
        self.rating = nn.Embedding(7, dim)  # 0 padding, 1–5 ratings, 6 = "?" (the candidate)
        self.position = nn.Embedding(history_len + 1, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.ReLU(),
                                  nn.Linear(dim, 1))
        self.register_buffer("mu", torch.tensor(float(global_mean)))

    def forward(self, batch):
        items = torch.cat([batch["item"].unsqueeze(1), batch["hist_item"]], dim=1)
        ratings = torch.cat([torch.full_like(batch["item"], 6).unsqueeze(1), batch["hist_rating"]], 1)
        positions = torch.arange(items.shape[1], device=items.device)
        x = (self.item(items) + self.genres(self.item_genres[items]) + self.rating(ratings)
             + self.position(positions))
        h = self.encoder(x, src_key_padding_mask=items == 0)
        return self.mu + self.head(h[:, 0]).squeeze(-1)


# --------------------------------------------------------------------------- fitting

BASELINE_MODELS = ("MF", "MLP", "Transformer+MLP")


def build_model(name: str, processed: Processed, params: dict | None = None,
                global_mean: float | None = None) -> nn.Module:
    """A fresh model (seed it before calling). params are the model's keyword arguments; the
    models start from the training data's mean rating."""
    params = dict(params or {})
    mu = float(processed.train_ratings()["rating"].mean()) if global_mean is None else global_mean
    if name == "MF":
        return BiasedMF(processed.n_users, processed.n_items, global_mean=mu, **params)
    if name == "Text-aware MF":
        if params.get("item_text") is None:
            raise ValueError("Text-aware MF needs item_text, the items' text embeddings "
                             "(llmrec.lm.item_embeddings): pass it in the model parameters")
        return TextAwareMF(processed.n_users, processed.n_items, global_mean=mu, **params)
    if name == "MLP":
        return MLPRecommender(processed.n_users, processed.n_items, global_mean=mu, **params)
    if name == "Transformer+MLP":
        genres, _ = genre_matrix(processed.items)
        return TransformerMLP(processed.n_items, genres, processed.history_len, global_mean=mu,
                              **params)
    raise ValueError(f"unknown baseline {name!r}; choose one of {BASELINE_MODELS} or 'Text-aware MF'")


def fit_baseline(name: str, processed: Processed, config: TrainConfig,
                 model_params: dict | None = None,
                 train_examples: pd.DataFrame | None = None,
                 val_examples: pd.DataFrame | None = None) -> tuple[nn.Module, TrainResult]:
    """Train one baseline and return it with its training history.

    MF and the MLP train on all training ratings; Transformer+MLP on training examples. Pass
    `train_examples` to train on a subset (the data-efficiency notebook does): MF and the MLP then
    use those rows as their ratings, so every method sees the same data. Early stopping follows
    the validation split, or `val_examples` (e.g. the sample a language model is validated on).
    """
    if train_examples is not None:
        train_df = train_examples
    elif name == "Transformer+MLP":
        train_df = processed.split("train")
    else:
        train_df = processed.train_ratings()
    seed_everything(config.seed)
    model = build_model(name, processed, model_params, float(train_df["rating"].mean()))
    result = train_regressor(model, to_tensors(processed, train_df),
                             to_tensors(processed, processed.split("val") if val_examples is None
                                        else val_examples),
                             replace(config), desc=name)
    return model, result


def predict_baseline(model: nn.Module, processed: Processed, examples: pd.DataFrame) -> np.ndarray:
    return predict(model, to_tensors(processed, examples))


# The settings of notebook 02, shared by every notebook that compares against the baselines.
BASELINE_SETTINGS = {
    "MF": {"model": {"dim": 8, "reg": 0.1}, "train": {"lr": 3e-3, "batch_size": 1024}},
    "Text-aware MF": {"model": {"dim": 8, "reg": 0.1}, "train": {"lr": 3e-3, "batch_size": 1024}},
    "MLP": {"model": {"dim": 32, "hidden": 64}, "train": {"lr": 1e-3, "batch_size": 1024}},
    "Transformer+MLP": {"model": {"dim": 64, "heads": 4, "layers": 2},
                        "train": {"lr": 1e-3, "batch_size": 512}},
}


def run_baselines(processed: Processed, examples: pd.DataFrame, *, epochs: int = 30,
                  max_steps: int | None = None, seed: int = 0, transformer_dim: int = 64,
                  models=BASELINE_MODELS):
    """Every baseline of notebook 02 on `examples`: (table rows, predictions, learning curves)."""
    y = examples["rating"].to_numpy()
    predictions = heuristic_predictions(processed, examples)
    rows = [{"method": m, "family": "heuristic", **rating_metrics(y, p)}
            for m, p in predictions.items()]
    curves = []
    for name in models:
        setting = BASELINE_SETTINGS[name]
        params = dict(setting["model"])
        if name == "Transformer+MLP":
            params["dim"] = transformer_dim
        config = TrainConfig(epochs=epochs, max_steps=max_steps, seed=seed, **setting["train"])
        model, result = fit_baseline(name, processed, config, params)
        predictions[name] = predict_baseline(model, processed, examples)
        rows.append({"method": name, "family": "trained on ratings",
                     **rating_metrics(y, predictions[name])})
        curves.append(result.history.assign(method=name))
    return pd.DataFrame(rows), predictions, pd.concat(curves, ignore_index=True)
