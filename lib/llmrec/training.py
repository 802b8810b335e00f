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

# DeepSpeed (the scale-out extra), which the Trainer imports when it is installed, warns on every
# CPU run that it found no GPU ("Setting accelerator to CPU…"): where there is none, say so first.
if "DS_ACCELERATOR" not in os.environ and not torch.cuda.is_available():
    os.environ["DS_ACCELERATOR"] = "cpu"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch: the same seed and preset give the same metrics on CPU.
    (Python's string hashing is not seeded here: PYTHONHASHSEED only acts when the interpreter
    starts, and no result of the kit depends on the order of a set or dict of strings.)"""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


class BestWeights:
    """Early stopping on a validation score: keeps the weights of the best epoch, says when
    `patience` epochs have passed without a better one, and restores the best at the end."""

    def __init__(self, patience: int, higher_is_better: bool = False):
        self.patience, self.sign = patience, -1.0 if higher_is_better else 1.0
        self.value, self.epoch, self.state = float("inf"), 0, None

    @property
    def best(self) -> float:
        return self.sign * self.value

    def update(self, model: nn.Module, score: float, epoch: int) -> bool:
        """Record this epoch's score; True when training should stop."""
        if self.sign * score < self.value:
            self.value, self.epoch = self.sign * score, epoch
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return False
        return epoch - self.epoch >= self.patience

    def restore(self, model: nn.Module) -> None:
        model.load_state_dict(self.state)


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
    rows, keeper = [], BestWeights(config.patience)
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
        if keeper.update(model, val_rmse, epoch) or (config.max_steps and step >= config.max_steps):
            break
    bar.close()
    keeper.restore(model)
    return TrainResult(pd.DataFrame(rows), keeper.epoch, keeper.best, time.perf_counter() - start,
                       asdict(config))


# --------------------------------------------------------------------------- language models


def pick_precision(preference: str, device: torch.device, model_type: str = "") -> str:
    """"auto": bf16 on a GPU that supports it, fp32 on the CPU. fp16 is refused for T5, whose
    activations overflow in fp16 (NaN losses); bf16 has fp32's range."""
    if preference == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32"
    if preference not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"unknown PRECISION {preference!r}; use 'auto', 'fp32', 'bf16' or 'fp16'")
    if preference == "fp16" and model_type.startswith(("t5", "mt5", "umt5")):
        raise ValueError("T5 models produce NaNs in fp16; use PRECISION='bf16' (or 'fp32')")
    return preference


def _best_on_validation_callback():
    """Keep the trained weights of the evaluation with the lowest validation loss and restore them
    when training ends: early stopping, as the baselines' loop does, without checkpoint files."""
    # lazy: transformers takes seconds to import; the baselines (notebook 02) train without it
    from transformers import TrainerCallback

    class BestOnValidation(TrainerCallback):
        def __init__(self):
            self.best, self.state = float("inf"), None

        def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
            loss = (metrics or {}).get("eval_loss")
            if loss is not None and loss < self.best and model is not None:
                self.best = loss
                self.state = {n: p.detach().clone() for n, p in model.named_parameters()
                              if p.requires_grad}

        def on_train_end(self, args, state, control, model=None, **kwargs):
            if self.state is not None and model is not None:
                with torch.no_grad():
                    for n, p in model.named_parameters():
                        if n in self.state:
                            p.copy_(self.state[n])

    return BestOnValidation()


def world_size() -> int:
    """How many processes train together: WORLD_SIZE, which `accelerate launch` and torchrun set
    (1 otherwise)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def sharded() -> bool:
    """Does a launcher shard the weights (DeepSpeed ZeRO or FSDP, through accelerate's env)?"""
    return any(os.environ.get(k, "false").lower() == "true"
               for k in ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP"))


def fsdp_on_cpu_processes() -> None:
    """Let accelerate's FSDP run on CPU processes (gloo), as the kit's tests do.

    accelerate 1.x chooses FSDP only on GPU-like devices: on CPU processes it silently trains
    plain DDP with the FSDP config, nothing sharded. torch's FSDP2 (`fully_shard`) itself runs
    on CPU with gloo, so when the launcher asked for FSDP and there is no GPU, this makes the
    accelerator state do what it does for GPUs — set the distributed type to FSDP and keep the
    plugin — and everything after (wrapping each block, gathering the state dict) is
    accelerate's own code. A no-op with a GPU, and without an FSDP launch."""
    # lazy: accelerate loads only for the Trainer's distributed runs
    from accelerate.state import AcceleratorState, DistributedType, PartialState

    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true" or torch.cuda.is_available():
        return
    if getattr(AcceleratorState, "_kit_fsdp_on_cpu", False):
        return
    original = AcceleratorState.__init__

    def init(self, *args, fsdp_plugin=None, **kwargs):
        original(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            if self._mixed_precision != "no":
                fsdp_plugin.set_mixed_precision(self._mixed_precision)
            self.fsdp_plugin = fsdp_plugin
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP  # as accelerate does

    AcceleratorState.__init__ = init
    AcceleratorState._kit_fsdp_on_cpu = True


def training_arguments(*, output_dir, n_train: int, epochs: float = 1.0, lr: float = 1e-4,
                       batch_size: int = 16, per_device_batch_size: int | None = None,
                       eval_batch_size: int = 64, seed: int = 0, max_steps: int | None = None,
                       eval_points: int = 8, precision: str = "fp32", weight_decay: float = 0.0,
                       warmup_ratio: float = 0.05, save_checkpoints: bool = False,
                       keep_best: bool = True, processes: int | None = None, **extra_args):
    """transformers' TrainingArguments for `n_train` examples, the same schedule on any number of
    processes: `batch_size` is the effective batch (the paper's 64), split over the processes
    and, past `per_device_batch_size` examples per process, over gradient-accumulation steps; the
    warm-up and the evaluation points count optimiser steps, so they do not move either.

    Create it before loading the model: under DeepSpeed ZeRO-3 its creation is what lets
    from_pretrained load each process's shard only. `keep_best` with sharded weights (ZeRO-3,
    FSDP) keeps the best evaluation through the Trainer's checkpoints (load_best_model_at_end);
    otherwise `train_with_trainer` keeps it in memory."""
    # lazy: transformers takes seconds to import; the baselines (notebook 02) train without it
    from transformers import TrainingArguments

    processes = processes or world_size()
    if batch_size % processes:
        raise ValueError(
            f"batch_size {batch_size} is not a multiple of {processes} process(es): choose one "
            "that divides evenly, so that every process takes the same share")
    share = batch_size // processes
    cap = per_device_batch_size or share  # at most this many per process and step
    per_device = max(d for d in range(1, min(cap, share) + 1) if share % d == 0)
    accumulation = share // per_device
    steps_per_epoch = max(1, -(-n_train // batch_size))
    total = max_steps or int(steps_per_epoch * epochs)
    every = max(1, total // eval_points)
    best_by_checkpoints = keep_best and sharded()
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=epochs,
        max_steps=max_steps or -1,
        learning_rate=lr,
        weight_decay=weight_decay,
        warmup_steps=int(warmup_ratio * total),
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accumulation,
        per_device_eval_batch_size=eval_batch_size,
        eval_strategy="steps", eval_steps=every,
        logging_strategy="steps", logging_steps=every,
        save_strategy="steps" if save_checkpoints or best_by_checkpoints else "no",
        save_steps=every,
        save_total_limit=2,
        load_best_model_at_end=best_by_checkpoints,
        metric_for_best_model="eval_loss" if best_by_checkpoints else None,
        bf16=str(precision) == "bf16", fp16=str(precision) == "fp16",  # str: a PrecisionChoice too
        seed=seed, data_seed=seed,
        report_to=[],
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=False,
        use_cpu=not torch.cuda.is_available(),
        ddp_find_unused_parameters=False,  # every trained parameter is used (RatingModel freezes
        # what it never calls, e.g. BERT's pooler): no extra pass per step
        **extra_args,
    )


def without_shared_copies(state_dict: dict) -> dict:
    """A state dict with each tensor once: T5 ties its embeddings and LM head (four names, one
    tensor), which safetensors refuses to save twice. The names kept are the first of each."""
    seen, out = set(), {}
    for name, tensor in state_dict.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
               tensor.dtype) if tensor.device.type != "meta" else name
        if key not in seen:
            seen.add(key)
            out[name] = tensor
    return out


def _trainer_class():
    """transformers' Trainer, saving the kit's models (a RatingModel is no PreTrainedModel, so the
    Trainer saves its bare state dict) with tied weights once: its checkpoints, which keeping the
    best evaluation under ZeRO-3 or FSDP needs, crashed on T5's shared embeddings."""
    # lazy: transformers takes seconds to import; the baselines (notebook 02) train without it
    from transformers import Trainer

    class KitTrainer(Trainer):
        def _save(self, output_dir=None, state_dict=None):
            if state_dict is None and self.args.should_save:
                state_dict = self.model.state_dict()
            if state_dict is not None:
                state_dict = without_shared_copies(state_dict)
            super()._save(output_dir, state_dict=state_dict)

    return KitTrainer


def train_with_trainer(model, train_dataset, eval_dataset, collator, *, output_dir=None,
                       args=None, resume: bool = False, keep_best: bool = True, **settings):
    """Fine-tune with transformers' Trainer: progress bars, evaluation during training,
    checkpoints and resume come from there. Returns the trainer and its log as a DataFrame
    (step, loss, eval_loss). `args`: TrainingArguments from `training_arguments` (or made here
    from `settings`: epochs, lr, batch_size, max_steps, precision, …). The same call runs under
    `accelerate launch` on several processes. With `keep_best` the weights of the best
    validation loss are restored at the end, like the early stopping of the baselines (kept in
    memory; with sharded weights, through the Trainer's checkpoints).
    """
    if args is None:
        args = training_arguments(output_dir=output_dir, n_train=len(train_dataset),
                                  keep_best=keep_best, **settings)
    in_memory = keep_best and not args.load_best_model_at_end
    callbacks = [_best_on_validation_callback()] if in_memory else []
    trainer = _trainer_class()(model=model, args=args, train_dataset=train_dataset,
                                     eval_dataset=eval_dataset, data_collator=collator, callbacks=callbacks)
    if sharded() and str(trainer.accelerator.distributed_type).split(".")[-1] not in ("FSDP", "DEEPSPEED"):
        raise RuntimeError(  # never again a sharded config that silently trains DDP
            f"the launcher asked for sharded weights but accelerate set up "
            f"{trainer.accelerator.distributed_type}: this accelerate version is not supported "
            "for FSDP/ZeRO-3 here; see README, 'Scaling past one GPU'")
    trainer.train(resume_from_checkpoint=True if resume else None)
    if callbacks and callbacks[0].state is not None:
        trainer.state.log_history.append({"best_eval_loss": callbacks[0].best,
                                          "step": trainer.state.global_step})
    elif args.load_best_model_at_end and trainer.state.best_metric is not None:
        trainer.state.log_history.append({"best_eval_loss": trainer.state.best_metric,
                                          "step": trainer.state.global_step})
    log = pd.DataFrame(trainer.state.log_history)
    return trainer, log


@torch.no_grad()
def predict_dataset(model, dataset, collator, batch_size: int = 64, desc: str = "predicting",
                    autocast: bool = False):
    """Run `model` over a dataset; returns (expected ratings, raw scores) as NumPy arrays.
    `autocast`: in bf16 autocast (the precision PRECISION chose: `choice.autocast`)."""
    model.eval()
    device = next(model.parameters()).device
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft-wrapped
    preds, scores = [], []
    for start in tqdm(range(0, len(dataset), batch_size), desc=desc, unit="batch", leave=False):
        batch = collator([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        batch.pop("labels", None)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            out = model(**{k: v.to(device) for k, v in batch.items()})["logits"].float().cpu()
        if "slot_index" in batch:  # packed sequences: one output per slot, padding dropped
            out = out[batch["slot_index"] >= 0]
        preds.append(base.expected_rating(out))
        scores.append(out)
    return torch.cat(preds).numpy(), torch.cat(scores).numpy()


def loss_curves(log: pd.DataFrame, label: str) -> pd.DataFrame:
    """A Trainer log as plottable rows: step, curve ("<label>, training/validation"), value."""
    train = log.dropna(subset=["loss"]) if "loss" in log else log.iloc[:0]
    val = log.dropna(subset=["eval_loss"]) if "eval_loss" in log else log.iloc[:0]
    return pd.concat([
        pd.DataFrame({"step": train["step"], "curve": f"{label}, training", "value": train["loss"]}),
        pd.DataFrame({"step": val["step"], "curve": f"{label}, validation", "value": val["eval_loss"]}),
    ], ignore_index=True)
