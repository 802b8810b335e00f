"""Fine-tune a language model as a rating classifier or regressor from the command line — the
same library calls as notebooks 03/04, as one script that `accelerate launch` spreads over
several processes (Flan-T5-XXL does not fit on one GPU).

    # one process (CPU or one GPU), the paper's settings (Kang et al.: lr 5e-5, batch 64, 50k steps)
    python -m llmrec.finetune --preset paper --model flan-t5-base --output-dir runs/ft

    # N GPUs: DDP (a copy per GPU), DeepSpeed ZeRO-3 or FSDP (the weights sharded)
    accelerate launch --multi_gpu --num_processes N -m llmrec.finetune --preset paper ...
    accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml --num_processes N \\
        -m llmrec.finetune --preset paper --model flan-t5-xxl --output-dir runs/flan-t5-xxl
    accelerate launch --config_file configs/accelerate/fsdp_t5.yaml --num_processes N ...

`--batch-size` is the effective batch, whatever the number of processes (split over them, then
over gradient-accumulation steps past `--per-device-batch-size`), so the schedule — steps,
warm-up, evaluations — is the same on 1, 2 or 8 processes.

Writes <output-dir>/metrics.json (test RMSE/MAE/AUC, the settings, the log),
<output-dir>/predictions.csv and the model (<output-dir>/model/rating_model.safetensors, whole
even when training sharded it: it loads back with lm.load_rating_model in one process).
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import timedelta
from pathlib import Path

import torch
from accelerate import PartialState
from safetensors.torch import save_file
from transformers.integrations import is_deepspeed_zero3_enabled

from .io import atomic_dir
from .lm import build_rating_model, collator_for, load_lm, make_dataset, save_rating_model
from .metrics import rating_metrics
from .presets import load_preset
from .splits import ensure_processed
from .training import (
    fsdp_on_cpu_processes,
    pick_device,
    pick_precision,
    predict_dataset,
    seed_everything,
    sharded,
    train_with_trainer,
    training_arguments,
)

# What --preset takes from a preset's notebook 03 (classification) or 04 (regression), and the
# flag each becomes. A flag given on the command line wins.
PRESET_FLAGS = {"DATASET": "dataset", "HISTORY_LEN": "history_len", "MAX_USERS": "max_users",
                "MODEL": "model", "HISTORY_GENRES": "history_genres", "N_TRAIN": "n_train",
                "N_VAL": "n_val", "TOP_LAYERS": "top_layers", "LORA": "lora", "EPOCHS": "epochs",
                "LR": "lr", "BATCH_SIZE": "batch_size", "MAX_STEPS": "max_steps", "SEED": "seed"}
DEFAULTS = {"model": "flan-t5-base", "dataset": "movielens-small", "history_len": 5,
            "history_genres": True, "max_users": None, "n_train": None, "n_val": 500,
            "top_layers": None, "lora": False, "epochs": 1.0, "lr": 3e-4, "batch_size": 16,
            "max_steps": None, "seed": 0}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m llmrec.finetune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default=None,
                   help="take the settings of a preset's notebook 03/04 (e.g. paper: lr 5e-5, "
                        "batch 64, 50k steps); flags given here win")
    p.add_argument("--model")
    p.add_argument("--head", choices=["classification", "regression"], default="regression")
    p.add_argument("--dataset")
    p.add_argument("--history-len", type=int)
    p.add_argument("--history-genres", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--max-users", type=int)
    p.add_argument("--n-train", type=int, help="default: every training example")
    p.add_argument("--n-val", type=int)
    p.add_argument("--top-layers", type=int,
                   help="decoder-only models: train only the top k layers from a cache")
    p.add_argument("--lora", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--epochs", type=float)
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int, help="the effective batch, over every process")
    p.add_argument("--per-device-batch-size", type=int, default=None,
                   help="at most this many examples per process and step (gradient accumulation "
                        "makes up the rest)")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="auto: the launcher's mixed precision if it sets one, else bf16 on a GPU "
                        "that has it and fp32 on the CPU")
    p.add_argument("--seed", type=int)
    p.add_argument("--output-dir", required=True)
    args = p.parse_args(argv)
    settings = dict(DEFAULTS)
    if args.preset:
        settings.update(preset_settings(args.preset, args.head))
    for key in DEFAULTS:
        if getattr(args, key) is None:
            setattr(args, key, settings[key])
    return args


def preset_settings(preset: str, head: str) -> dict:
    """A preset's settings for notebook 03 (classification) or 04 (regression), as flags."""
    cfg = load_preset(preset)
    notebook = "03_flan_t5_classification" if head == "classification" else "04_flan_t5_regression"
    values = {**cfg["common"], **(cfg["notebooks"].get(notebook) or {})}
    return {flag: values[name] for name, flag in PRESET_FLAGS.items() if name in values}


def launcher_precision() -> str | None:
    """The mixed precision `accelerate launch` was given (its config file or --mixed_precision)."""
    value = os.environ.get("ACCELERATE_MIXED_PRECISION")
    return {"no": "fp32", "bf16": "bf16", "fp16": "fp16"}.get(value) if value else None


def choose_precision(requested: str, device, model_type: str) -> str:
    """--precision, checked against the launcher's: DeepSpeed refuses a mismatch only after the
    model is loaded ("ds bf16.enabled=True vs hf bf16=False")."""
    # Only DeepSpeed holds the Trainer to the launcher's precision; for DDP and FSDP the Trainer
    # passes its own to accelerate (a bare `--multi_gpu` launch says "no" without being asked).
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    launcher = launcher_precision() if deepspeed else None
    if requested == "auto" and launcher:
        return pick_precision(launcher, device, model_type)
    chosen = pick_precision(requested, device, model_type)
    if launcher and launcher != chosen:
        flag = {"fp32": "no"}.get(chosen, chosen)
        raise SystemExit(
            f"error: --precision {requested} gives {chosen}, but accelerate launch was given mixed "
            f"precision {launcher} (its config file or --mixed_precision). Give both the same: "
            f"accelerate launch --mixed_precision {flag} … -m llmrec.finetune --precision {chosen}, "
            "or leave --precision auto to follow the launcher.")
    return chosen


def load_examples(args, state):
    """The split (one process builds or downloads it, then the rest load it), the training and
    validation samples, and the test examples."""
    with state.main_process_first():
        processed = ensure_processed(args.dataset, history_len=args.history_len,
                                     max_users=args.max_users, seed=args.seed,
                                     verbose=state.is_main_process)
    train = processed.sample("train", args.n_train or None, args.seed)
    val = processed.sample("val", args.n_val, args.seed)
    return processed, train, val, processed.split("test")


def join_processes() -> PartialState:
    """Under accelerate launch or torchrun: join the process group (alone: a group of one). The
    timeout is how long the other processes wait while the main one works alone (builds the
    split, saves the model)."""
    fsdp_on_cpu_processes()
    # On CPU processes accelerate joins the group only when told `cpu` (else it reports one
    # process until TrainingArguments exist: every rank was "main" and took the whole batch);
    # DeepSpeed brings its own CPU accelerator and must not be told.
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    return PartialState(cpu=not torch.cuda.is_available() and not deepspeed,
                        timeout=timedelta(hours=2))


def main(argv=None) -> dict:
    args = parse_args(argv)
    state = join_processes()
    seed_everything(args.seed)
    out = Path(args.output_dir)
    if state.is_main_process:
        print("settings:", json.dumps({k: getattr(args, k) for k in DEFAULTS}), flush=True)
    processed, train, val, test = load_examples(args, state)
    device = pick_device("auto")
    model_type = "t5" if "t5" in str(args.model).lower() else ""  # refuses fp16 for T5, before loading
    precision = choose_precision(args.precision, device, model_type)
    # Before the model is loaded: under ZeRO-3 this is what makes from_pretrained load a shard.
    training_args = training_arguments(
        output_dir=out / "checkpoints", n_train=len(train), epochs=args.epochs, lr=args.lr,
        batch_size=args.batch_size, per_device_batch_size=args.per_device_batch_size,
        seed=args.seed, max_steps=args.max_steps, precision=precision,
        # WORLD_SIZE, from the launcher: under DeepSpeed on CPU accelerate reports one process
        # until TrainingArguments exist (its main_process_first above is then a no-op, and the
        # shared folders of llmrec.io keep the ranks from tripping over each other)
        processes=int(os.environ.get("WORLD_SIZE", state.num_processes)))
    sharded_loading = is_deepspeed_zero3_enabled()  # from_pretrained loads a shard per process
    lm = load_lm(args.model, seed=args.seed)
    with state.main_process_first():  # the layer cache, likewise
        data = {name: make_dataset(lm, processed, df, top_layers=args.top_layers,
                                   history_genres=args.history_genres,
                                   name=f"{Path(args.model).name}-{name}-{len(df)}")
                for name, df in (("train", train), ("val", val), ("test", test))}
    mean = float(processed.train_ratings()["rating"].mean())
    build = {"top_layers": args.top_layers, "lora": args.lora, "lora_r": args.lora_r, "init_rating": mean}
    model = build_rating_model(lm, args.head, **build)
    tied = tied_names(model)  # before sharding rewraps the parameters
    trainer, log = train_with_trainer(model, data["train"], data["val"], collator_for(lm),
                                      args=training_args)
    targs = trainer.args
    run = {"processes": state.num_processes, "precision": precision,
           "distributed_type": str(trainer.accelerator.distributed_type).split(".")[-1],
           "effective_batch": targs.per_device_train_batch_size * state.num_processes
           * targs.gradient_accumulation_steps,
           "zero3_sharded_loading": sharded_loading}
    pred = predict_and_save(args, state, trainer, model, data["test"], collator_for(lm), build, tied)
    metrics = write_results(args, test, pred, run, log) if state.is_main_process else {}
    state.wait_for_everyone()
    return metrics


def predict_and_save(args, state, trainer, model, test_data, collator, build: dict, tied: set[str]):
    """The test predictions (on the main process; None elsewhere when the model is whole) and the
    trained model written whole to <output-dir>/model, however the training sharded it."""
    out, meta = Path(args.output_dir), {"top_layers": args.top_layers}
    if not sharded():
        # one process or DDP: the trained model is whole in every process; the main one predicts
        # and saves it alone (the unwrapped module calls no collective)
        if not state.is_main_process:
            return None
        pred, _ = predict_dataset(model, test_data, collator)
        save_rating_model(model.merge_and_unload() if args.lora else model, out / "model", meta=meta)
        return pred
    # ZeRO-3 / FSDP: every process predicts its share with the sharded model (outputs gathered),
    # and takes part in gathering the weights, which only the main one receives and writes — no
    # second copy of the model anywhere
    scores = torch.as_tensor(trainer.predict(test_data).predictions)
    pred = (scores.float().softmax(-1) @ torch.arange(1.0, 6.0) if args.head == "classification"
            else scores.float().reshape(-1)).numpy()
    weights = trainer.accelerator.get_state_dict(trainer.model_wrapped)
    if state.is_main_process:
        if args.lora:  # merging the adapters needs the model: build one whole copy
            whole = whole_model(args, build, weights).merge_and_unload()
            save_rating_model(whole, out / "model", meta=meta)
        else:
            save_rating_weights(model, weights, tied, out / "model", meta=meta)
    return pred


def write_results(args, test, pred, run: dict, log) -> dict:
    """<output-dir>/predictions.csv and metrics.json (the metrics, the settings, how it ran, the
    training log), written by the main process; the test metrics."""
    out = Path(args.output_dir)
    metrics = rating_metrics(test["rating"].to_numpy(), pred)
    test[["user_idx", "item_idx", "rating"]].assign(prediction=pred).to_csv(
        out / "predictions.csv", index=False)
    (out / "metrics.json").write_text(json.dumps(
        {"metrics": metrics, "args": vars(args), **run, "log": log.to_dict("records")},
        indent=2, default=str) + "\n")
    print(json.dumps(metrics, indent=2))
    return metrics


def tied_names(model) -> set[str]:
    """The names of parameters that are another's (T5's embeddings and LM head are one tensor
    under four names): all but the first of each group."""
    names = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(param), []).append(name)
    return {n for group in names.values() for n in group[1:]}


def save_rating_weights(model, weights: dict, tied: set[str], folder: Path, meta: dict) -> None:
    """Write gathered `weights` as lm.save_rating_model writes a model (lm.load_rating_model reads
    it): each tied group stored once, by its first name (`tied`: the others)."""
    info = {"model_name": model.model_name, "family": model.family, "head": model.head, **meta}
    with atomic_dir(folder) as tmp:
        save_file({k: v.contiguous() for k, v in weights.items() if k not in tied},
                  str(tmp / "rating_model.safetensors"), metadata={"format": "pt"})
        (tmp / "rating_model.json").write_text(json.dumps(info, indent=2) + "\n")


def whole_model(args, build: dict, weights: dict):
    """A fresh model in this process, outside any sharding, holding the gathered `weights`."""
    try:  # from_pretrained must not partition this copy over processes that are not calling it
        # lazy: this part of transformers exists only where DeepSpeed is installed
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()
    except ImportError:
        pass
    model = build_rating_model(load_lm(args.model, seed=args.seed), args.head, **build)
    model.load_state_dict(weights)  # strict: every trained weight, none missing
    return model


if __name__ == "__main__":
    main()
