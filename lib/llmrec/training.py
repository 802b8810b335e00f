"""Seeds, devices and the one training loop the PyTorch baselines share.

The loop is short on purpose so that a learner can read it in one go: mini-batches, MSE (plus the
model's own regularisation, if it has one), Adam, validation RMSE after every epoch, early
stopping that restores the best epoch. The language models of later notebooks train through
transformers' Trainer instead.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .metrics import rmse


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch: the same seed and preset give the same metrics on CPU."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)


def pick_device(preference: str = "auto") -> torch.device:
    """"auto" takes a GPU when there is one; "cpu"/"cuda"/"mps" force one (with a clear error)."""
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("DEVICE='cuda' but PyTorch sees no CUDA GPU; use DEVICE='auto' or 'cpu'")
    if preference == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("DEVICE='mps' but MPS is not available; use DEVICE='auto' or 'cpu'")
    if preference not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown DEVICE {preference!r}; use 'auto', 'cpu', 'cuda' or 'mps'")
    return torch.device(preference)


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 1024
    lr: float = 3e-3
    weight_decay: float = 0.0
    patience: int = 3  # epochs without a better validation RMSE before stopping
    max_steps: int | None = None  # a hard cap, for the smoke preset
    seed: int = 0


@dataclass
class TrainResult:
    history: pd.DataFrame  # one row per epoch: epoch, step, train_loss, val_rmse
    best_epoch: int
    best_val_rmse: float
    seconds: float
    config: dict


Batch = dict[str, torch.Tensor]


def _batches(data: Batch, batch_size: int, shuffle: bool, generator=None):
    n = len(data["target"])
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        yield {k: v[idx] for k, v in data.items()}


@torch.no_grad()
def predict(model: nn.Module, data: Batch, batch_size: int = 4096) -> np.ndarray:
    model.eval()
    out = [model(b).float().cpu() for b in _batches(data, batch_size, shuffle=False)]
    return torch.cat(out).numpy()


def train_regressor(model: nn.Module, train: Batch, val: Batch, config: TrainConfig,
                    desc: str = "training") -> TrainResult:
    """Fit `model` (forward(batch) -> predicted ratings) on `train`; early-stop on `val` RMSE."""
    if len(train["target"]) == 0 or len(val["target"]) == 0:
        raise ValueError(f"{desc}: empty training or validation data")
    generator = torch.Generator().manual_seed(config.seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = nn.MSELoss()
    rows, best = [], (float("inf"), 0, None)
    step, start = 0, time.perf_counter()
    bar = tqdm(range(1, config.epochs + 1), desc=desc, unit="epoch", leave=False)
    for epoch in bar:
        model.train()
        total, count = 0.0, 0
        for batch in _batches(train, config.batch_size, shuffle=True, generator=generator):
            loss = loss_fn(model(batch), batch["target"])
            if hasattr(model, "penalty"):  # e.g. MF's L2 on the rows of this batch
                loss = loss + model.penalty(batch)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch["target"])
            count += len(batch["target"])
            step += 1
            if config.max_steps and step >= config.max_steps:
                break
        val_rmse = rmse(val["target"].numpy(), predict(model, val))
        rows.append({"epoch": epoch, "step": step, "train_loss": total / count, "val_rmse": val_rmse})
        bar.set_postfix(train_loss=f"{total / count:.4f}", val_rmse=f"{val_rmse:.4f}")
        if val_rmse < best[0]:
            best = (val_rmse, epoch, {k: v.detach().clone() for k, v in model.state_dict().items()})
        elif epoch - best[1] >= config.patience:
            break
        if config.max_steps and step >= config.max_steps:
            break
    bar.close()
    model.load_state_dict(best[2])
    return TrainResult(pd.DataFrame(rows), best[1], best[0], time.perf_counter() - start,
                       asdict(config))
