"""Padding a batch of variable-length examples: below both llmrec.lm (its collators) and
llmrec.cache (its batched forward passes), so that neither imports the other for it."""

from __future__ import annotations

import torch


def pad_batch(features: list[dict], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Right-pad a list of examples ({"input_ids"} or {"inputs_embeds"}, plus "labels")."""
    key = "inputs_embeds" if "inputs_embeds" in features[0] else "input_ids"
    lengths = [len(f[key]) for f in features]
    longest = max(lengths)
    mask = torch.zeros(len(features), longest, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    if key == "input_ids":
        values = torch.full((len(features), longest), pad_id, dtype=torch.long)
        for i, f in enumerate(features):
            values[i, :lengths[i]] = torch.as_tensor(f["input_ids"])
    else:
        dim = features[0]["inputs_embeds"].shape[-1]
        values = torch.zeros(len(features), longest, dim, dtype=torch.float32)
        for i, f in enumerate(features):
            values[i, :lengths[i]] = f["inputs_embeds"].float()
    batch = {key: values, "attention_mask": mask}
    if "labels" in features[0]:
        batch["labels"] = torch.tensor([float(f["labels"]) for f in features])
    return batch
