"""Fine-tune a language model as a rating classifier or regressor from the command line — the
same library calls as notebooks 03/04, as one script that `accelerate launch` can spread over
several GPUs (Flan-T5-XXL does not fit on one).

    # one process (CPU or one GPU); what the tests run, with a tiny model
    python -m llmrec.finetune --model flan-t5-base --head regression --output-dir runs/ft

    # several GPUs, ZeRO-3 (parameters, gradients and optimiser state sharded across GPUs)
    accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml \\
        -m llmrec.finetune --model flan-t5-xxl --head regression --precision bf16 \\
        --output-dir runs/flan-t5-xxl

    # or FSDP (PyTorch's sharding) with configs/accelerate/fsdp_t5.yaml

Writes <output-dir>/metrics.json (test RMSE/MAE/AUC) and the model (rating_model.safetensors).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .lm import build_rating_model, collator_for, load_lm, make_dataset, save_rating_model
from .metrics import rating_metrics
from .splits import ensure_processed
from .training import (
    pick_device,
    pick_precision,
    predict_dataset,
    seed_everything,
    train_with_trainer,
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m llmrec.finetune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="flan-t5-base")
    p.add_argument("--head", choices=["classification", "regression"], default="regression")
    p.add_argument("--dataset", default="movielens-small")
    p.add_argument("--history-len", type=int, default=5)
    p.add_argument("--history-genres", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--max-users", type=int, default=None)
    p.add_argument("--n-train", type=int, default=None, help="default: every training example")
    p.add_argument("--n-val", type=int, default=500)
    p.add_argument("--top-layers", type=int, default=None,
                   help="decoder-only models: train only the top k layers from a cache")
    p.add_argument("--lora", action="store_true")
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", required=True)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    seed_everything(args.seed)
    out = Path(args.output_dir)
    processed = ensure_processed(args.dataset, history_len=args.history_len,
                                 max_users=args.max_users, seed=args.seed)
    train = processed.sample("train", args.n_train or None, args.seed)
    val = processed.sample("val", args.n_val, args.seed)
    test = processed.split("test")

    device = pick_device("auto")
    lm = load_lm(args.model, seed=args.seed)
    data = {name: make_dataset(lm, processed, df, top_layers=args.top_layers,
                               history_genres=args.history_genres,
                               name=f"{Path(args.model).name}-{name}-{len(df)}")
            for name, df in (("train", train), ("val", val), ("test", test))}
    mean = float(processed.train_ratings()["rating"].mean())
    model = build_rating_model(lm, args.head, top_layers=args.top_layers, lora=args.lora,
                               lora_r=args.lora_r, init_rating=mean)
    trainer, log = train_with_trainer(
        model, data["train"], data["val"], collator_for(lm), output_dir=out / "checkpoints",
        epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
        max_steps=args.max_steps, precision=pick_precision(args.precision, device, lm.model_type))
    metrics = {}
    if trainer.is_world_process_zero():
        pred, _ = predict_dataset(trainer.model, data["test"], collator_for(lm))
        metrics = rating_metrics(test["rating"].to_numpy(), pred)
        base = model.merge_and_unload() if args.lora else model
        save_rating_model(base, out / "model", meta={"top_layers": args.top_layers})
        (out / "metrics.json").write_text(json.dumps(
            {"metrics": metrics, "args": vars(args), "log": log.to_dict("records")},
            indent=2, default=str) + "\n")
        print(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    main()
