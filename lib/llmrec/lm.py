"""Language models as rating predictors: one interface for three families.

- seq2seq (Flan-T5, the paper's): the encoder reads the prompt; the decoder's first step gives
  the answer. Classification reads its logits over the tokens "1".."5"; regression projects its
  hidden state to one number.
- causal (decoder-only: Llama, SmolLM2, Qwen, Gemma): the hidden state of the last prompt token
  (the position that predicts the answer's first token) does the same.
- encoder (BERT, MiniLM): mean-pooled token states, then a linear head (a cheap comparison).

A model is named by a Hugging Face hub id (`google/flan-t5-base`), a local folder, or an alias:
the packaged offline models (`smollm2-135m`, `minilm-l6`) and the smoke preset's tiny random
models (`tiny-t5`, `tiny-llama`, `tiny-bert`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import os
import socket
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from huggingface_hub import try_to_load_from_cache
from safetensors.torch import load_model, save_model
from torch import nn

from .batching import pad_batch
from .cache import cached_hidden, top_layers_body
from .io import atomic_dir, atomic_path, sha256_file
from .packaged_models import PACKAGED_MODELS, locate_packaged_model, verify_packaged_file
from .paths import model_dir, repo_root
from .prompts import build_prompts, item_texts
from .training import predict_dataset

SYSTEM_PROMPT = "You predict how users rate items, on a scale from 1 to 5."

# Short names for models the kit knows. Hub ids and local folders work too.
HUB_ALIASES = {
    "flan-t5-small": "google/flan-t5-small",
    "flan-t5-base": "google/flan-t5-base",
    "flan-t5-large": "google/flan-t5-large",
    "flan-t5-xl": "google/flan-t5-xl",
    "flan-t5-xxl": "google/flan-t5-xxl",
}
TINY_MODELS = ("tiny-t5", "tiny-llama", "tiny-bert")

# LoRA targets per family: the attention projections, as in the LoRA paper and peft's defaults.
LORA_TARGETS = {
    "t5": ["q", "v"],
    "llama": ["q_proj", "v_proj"], "qwen2": ["q_proj", "v_proj"], "qwen3": ["q_proj", "v_proj"],
    "gemma": ["q_proj", "v_proj"], "gemma2": ["q_proj", "v_proj"], "gemma3_text": ["q_proj", "v_proj"],
    "bert": ["query", "value"],
}


@dataclass
class LoadedLM:
    model: nn.Module  # the transformers model (…ForConditionalGeneration / ForCausalLM / Model)
    tokenizer: object
    family: str  # seq2seq | causal | encoder
    name: str  # what the user asked for

    @property
    def model_type(self) -> str:
        return self.model.config.model_type

    @property
    def hidden_size(self) -> int:
        cfg = self.model.config
        return getattr(cfg, "d_model", None) or cfg.hidden_size

    @property
    def n_layers(self) -> int:
        cfg = self.model.config
        return getattr(cfg, "num_decoder_layers", None) or cfg.num_hidden_layers

    def __repr__(self) -> str:
        params = sum(p.numel() for p in self.model.parameters())
        return (f"LoadedLM({self.name!r}: {self.model_type}, {self.family}, "
                f"{params / 1e6:.1f}M parameters, {self.n_layers} layers)")


# --------------------------------------------------------------------------- loading


def tokenizer_asset(name: str) -> Path:
    """A tokenizer shipped with the kit (lib/llmrec/assets/tokenizers/<name>)."""
    return Path(str(resources.files("llmrec") / "assets" / "tokenizers" / name))


def _tiny(name: str, seed: int) -> LoadedLM:
    """Small random models of each family, built from a config (no download): the smoke preset's
    stand-ins, with the real tokenizers so token ids and prompt lengths are realistic."""
    # lazy: transformers takes seconds to import; readers of this module's helpers load no model
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertModel,
        LlamaConfig,
        LlamaForCausalLM,
        T5Config,
        T5ForConditionalGeneration,
    )

    torch.manual_seed(seed)
    if name == "tiny-t5":
        tok = AutoTokenizer.from_pretrained(tokenizer_asset("t5"))
        cfg = T5Config(vocab_size=len(tok), d_model=32, d_kv=16, d_ff=64, num_layers=2,
                       num_decoder_layers=2, num_heads=2, feed_forward_proj="gated-gelu",
                       tie_word_embeddings=False, decoder_start_token_id=tok.pad_token_id,
                       pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        return LoadedLM(T5ForConditionalGeneration(cfg), tok, "seq2seq", name)
    if name == "tiny-llama":
        tok = AutoTokenizer.from_pretrained(tokenizer_asset("smollm2"))
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                          num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                          max_position_embeddings=2048, tie_word_embeddings=True,
                          pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        return LoadedLM(LlamaForCausalLM(cfg), tok, "causal", name)
    tok = AutoTokenizer.from_pretrained(tokenizer_asset("minilm"))
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=512)
    return LoadedLM(BertModel(cfg, add_pooling_layer=False), tok, "encoder", name)


def model_cache_dir() -> Path:
    """Converted packaged models: $LLMREC_MODEL_DIR or models/ in the checkout."""
    return model_dir()


MADE_FROM = "llmrec-made-from.json"  # in a converted folder: what it was made from, and its files


def packaged_model_folder(alias: str) -> Path:
    """A folder that from_pretrained loads offline. The GGUF model is converted once: transformers
    refuses save_pretrained on a GGUF-loaded model, so the weights go into a fresh model built
    from the same config, and that is saved (reloads in seconds instead of half a minute).

    The folder records what it was made from (package, version, the GGUF file's size) and the
    size, digest and time of every file it wrote; one that does not match — another model copied
    there, a file cut short by a full disk or a killed copy, bytes changed in place (a file whose
    time moved is read again), a new version of the package — is rebuilt."""
    source = locate_packaged_model(alias)
    info = PACKAGED_MODELS[alias]
    if not info["file"].endswith(".gguf"):
        verify_packaged_file(alias, source)  # loaded as it is: its bytes checked first (0.1 s)
        return source
    target = model_cache_dir() / alias
    made_from = {"package": info["package"], "version": info["version"], "file": info["file"],
                 "size": (source / info["file"]).stat().st_size}
    why = _converted_mismatch(target, made_from)
    if why is None:
        return target
    if target.exists():
        print(f"{target} {why}: converting it again")
    verify_packaged_file(alias, source)
    print(f"Converting {info['file']} to a transformers folder in {target} (once, ~30 s)…")
    with atomic_dir(target, shared=True) as tmp:  # the same package converts to the same folder
        _convert_gguf(source, info["file"], tmp)
        files = {p.name: _file_stamp(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / MADE_FROM).write_text(json.dumps({"made_from": made_from, "files": files},
                                                indent=2) + "\n")
    return target


@contextlib.contextmanager
def _no_loading_bars():
    """transformers' own progress bars while a model loads ("Loading weights", and four
    "Converting and de-quantizing GGUF tensors" bars for one conversion): a load takes seconds and
    the kit prints one line for it instead."""
    # lazy: transformers takes seconds to import; readers of this module's helpers load no model
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    enabled, bar = hf_logging.is_progress_bar_enabled(), gguf_utils.tqdm
    hf_logging.disable_progress_bar()
    gguf_utils.tqdm = functools.partial(bar, disable=True)  # a plain tqdm, not behind the switch above
    try:
        yield
    finally:
        gguf_utils.tqdm = bar
        if enabled:
            hf_logging.enable_progress_bar()


def _convert_gguf(source: Path, file: str, out: Path) -> None:
    # lazy: transformers takes seconds to import; readers of this module's helpers load no model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = {"gguf_file": file}
    with _no_loading_bars():
        tok = AutoTokenizer.from_pretrained(source, **gguf)
        loaded = AutoModelForCausalLM.from_pretrained(source, **gguf)
    fresh = AutoModelForCausalLM.from_config(loaded.config)
    fresh.load_state_dict(loaded.state_dict())
    fresh.save_pretrained(out)
    tok.save_pretrained(out)


def _converted_mismatch(folder: Path, made_from: dict) -> str | None:
    """Why `folder` is not the conversion of `made_from` (None: it is)."""
    if not folder.is_dir():
        return "does not exist"
    try:
        record = json.loads((folder / MADE_FROM).read_text())
        files = dict(record["files"])
        recorded = dict(record["made_from"])
    except (OSError, ValueError, TypeError, KeyError):
        return f"has no readable {MADE_FROM} (it was not converted by the kit, or not finished)"
    if recorded != made_from:
        return f"was made from {recorded}, not from {made_from}"
    restamped = {}
    for name, stamp in files.items():
        size = stamp.get("size") if isinstance(stamp, dict) else stamp  # an older kit: the size alone
        path = folder / name
        if not path.is_file() or path.stat().st_size != size:
            got = path.stat().st_size if path.is_file() else "missing"
            return f"holds {name} with {got} bytes where the conversion wrote {size}"
        if not isinstance(stamp, dict) or "sha256" not in stamp:
            restamped[name] = _file_stamp(path)  # its digest from now on
        elif path.stat().st_mtime_ns != stamp.get("mtime_ns"):  # written since (or copied): read again
            digest = sha256_file(path)
            if digest != stamp["sha256"]:
                return f"holds {name} with other bytes than the conversion wrote (the same size, another digest)"
            restamped[name] = _file_stamp(path, digest)  # the same bytes: not read again next time
    if "model.safetensors" not in files or "config.json" not in files:
        return "lacks model.safetensors or config.json"
    if restamped:  # best effort: a read-only models folder is checked the same way next time
        with contextlib.suppress(OSError), atomic_path(folder / MADE_FROM) as tmp:
            tmp.write_text(json.dumps({**record, "files": {**files, **restamped}}, indent=2) + "\n")
    return None


def _file_stamp(path: Path, digest: str | None = None) -> dict:
    """What a converted file is checked against: its size, its bytes' digest and its time."""
    return {"size": path.stat().st_size, "sha256": digest or sha256_file(path),
            "mtime_ns": path.stat().st_mtime_ns}


def _family_of(config) -> str:
    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    archs = " ".join(getattr(config, "architectures", None) or [])
    if "CausalLM" in archs or config.model_type in LORA_TARGETS and config.model_type != "bert":
        return "causal"
    return "encoder"


@functools.lru_cache(maxsize=4)
def hub_reachable(timeout: float = 3.0) -> bool:
    """Can the Hugging Face hub be reached (a TCP connection to its host within `timeout`)?
    Asked once per process, so that an offline machine fails in seconds, not after retries."""
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _in_hub_cache(repo_id: str) -> bool:
    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except (ValueError, OSError):  # an id that is no valid repo name, an unreadable cache
        return False


OFFLINE_ADVICE = ("Offline, use the packaged models smollm2-135m or minilm-l6 (`make models` "
                  "installs them), or download the model where there is a network and pass its "
                  "folder as the model name.")


def local_model_folder(name: str) -> Path | None:
    """The folder `name` names, relative to here or to the kit's root (a notebook runs in
    notebooks/, so a folder given from the root is found too); None when there is none."""
    path = Path(name).expanduser()
    for candidate in [path] if path.is_absolute() else [path, repo_root() / path]:
        if candidate.is_dir():
            return candidate.resolve()
    return None


def check_model(name: str) -> dict:
    """Where `name` would load from, checked in seconds and before any other work: a tiny model,
    an installed packaged model, an existing folder, or a hub id that is in the local cache or
    reachable. Raises FileNotFoundError / OSError saying what to do."""
    if name in TINY_MODELS:
        return {"source": name, "local_only": True}
    if name in PACKAGED_MODELS:
        locate_packaged_model(name)  # raises with the install command
        return {"source": name, "local_only": True}
    folder = local_model_folder(name)
    if folder is not None:
        if not (folder / "config.json").is_file():
            held = sorted(p.name for p in folder.iterdir())[:8]
            raise FileNotFoundError(
                f"model folder {folder} has no config.json (it holds: "
                f"{', '.join(held) or 'nothing'}), so it is not a transformers model folder. Give "
                "a folder that save_pretrained wrote (config.json, the weights and the tokenizer "
                "files), or a hub id.")
        return {"source": str(folder), "local_only": True}
    if name.startswith((".", "/", "~")):
        raise FileNotFoundError(f"model folder {name} does not exist (looked in {Path.cwd()} and "
                                f"in the kit's root {repo_root()})")
    source = HUB_ALIASES.get(name, name)
    if _in_hub_cache(source):
        return {"source": source, "local_only": not hub_reachable()}
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    if not offline and hub_reachable():
        return {"source": source, "local_only": False}
    known = ", ".join([*TINY_MODELS, *PACKAGED_MODELS, *HUB_ALIASES])
    what = (f"{name!r} ({source} on the Hugging Face hub)" if name in HUB_ALIASES else
            f"{name!r} is not a model the kit knows ({known}), nor a local folder; as a hub id it")
    why = ("HF_HUB_OFFLINE=1 forbids downloading it" if offline else
           "the hub cannot be reached from here (no connection within 3 s)")
    raise OSError(f"{what} is not in the local cache, and {why}. {OFFLINE_ADVICE}"
                  + ("" if offline else " Set HF_HUB_OFFLINE=1 to skip the network altogether."))


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".h5", ".msgpack")


@functools.lru_cache(maxsize=64)
def _file_digest(path: str, state: tuple) -> str:
    """A weight file's sha256, computed once per version of the file (its inode, size and times)."""
    return sha256_file(path)[:16]


def _weights_digest(folder: Path) -> str:
    """The weight files of a folder (their names and contents), in one short digest."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    parts = []
    for p in files:
        st = p.stat()
        parts.append(f"{p.relative_to(folder)}:"
                     f"{_file_digest(str(p), (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16] if parts else "no weight files"


def model_identity(name: str) -> str:
    """What `name` stands for now, by content, without loading it: a packaged model's package,
    version and weight file digest; a folder's weight files' digest; a hub model's cached
    revision (or its id, before the first download); a tiny model's name (its weights come from
    the seed). Results stored from a model are keyed on this, so that new weights behind the same
    name — a retrained folder, an upgraded package — are never read as the old ones'."""
    if name in TINY_MODELS:
        return f"{name} (random weights from the seed)"
    if name in PACKAGED_MODELS:
        info = PACKAGED_MODELS[name]
        try:
            version = importlib.metadata.version(info["package"])
            return f"{info['package']}=={version} {_weights_digest(locate_packaged_model(name))}"
        except (importlib.metadata.PackageNotFoundError, FileNotFoundError):
            return f"{info['package']}==not installed"
    folder = local_model_folder(name)
    if folder is not None:
        return f"folder {folder.name} {_weights_digest(folder)}"
    source = HUB_ALIASES.get(name, name)
    try:
        cached = try_to_load_from_cache(source, "config.json")
    except (ValueError, OSError):
        cached = None
    return f"{source}@{Path(cached).parent.name}" if isinstance(cached, str) else source


def load_lm(name: str, *, seed: int = 0, dtype: torch.dtype | None = None) -> LoadedLM:
    """Load a model and its tokenizer by alias, hub id or local folder (see the module doc)."""
    # lazy: transformers takes seconds to import; readers of this module's helpers load no model
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForCausalLM,
        AutoModelForSeq2SeqLM,
        AutoTokenizer,
    )

    if name in TINY_MODELS:
        return _tiny(name, seed)
    where = check_model(name)
    source = str(packaged_model_folder(name)) if name in PACKAGED_MODELS else where["source"]
    local = {"local_files_only": True} if where["local_only"] else {}
    try:
        config = AutoConfig.from_pretrained(source, **local)
    except OSError as e:
        raise OSError(
            f"could not load model {name!r} from {source} ({e.__class__.__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}). Check the hub id or the folder. "
            f"{OFFLINE_ADVICE}") from None
    family = _family_of(config)
    auto = {"seq2seq": AutoModelForSeq2SeqLM, "causal": AutoModelForCausalLM,
            "encoder": AutoModel}[family]
    kwargs = {"dtype": dtype} if dtype is not None else {}
    with _no_loading_bars():
        model = auto.from_pretrained(source, **kwargs, **local)
        tokenizer = AutoTokenizer.from_pretrained(source, **local)
    return LoadedLM(model, tokenizer, family, name)


# --------------------------------------------------------------------------- prompts → tokens


def rating_token_ids(tokenizer) -> list[int]:
    """The token id of each rating "1".."5": the five classes of the classifier. Each rating must
    be one token (true for T5, Llama/SmolLM2, Qwen, Gemma and BERT vocabularies)."""
    ids = []
    for rating in "12345":
        tokens = tokenizer.encode(rating, add_special_tokens=False)
        if len(tokens) != 1:
            pieces = tokenizer.convert_ids_to_tokens(tokens)
            raise ValueError(
                f"the tokenizer {type(tokenizer).__name__} splits the rating {rating!r} into "
                f"{len(tokens)} tokens {pieces}; rating-token classification needs one token per "
                f"rating. Use regression (a projection head) with this model instead.")
        ids.append(tokens[0])
    if len(set(ids)) != 5:
        raise ValueError(f"the ratings 1..5 map to repeated token ids {ids}")
    return ids


def format_prompts(lm: LoadedLM, prompts: list[str],
                   demonstrations: list[tuple[str, int]] | None = None,
                   answer_prefix: str = "") -> list[str]:
    """The text each family reads. Chat models get their chat template (a system line, the
    prompt as the user's turn, the assistant's turn opened); few-shot demonstrations become
    earlier turns. Models without a template read the prompt, demonstrations first.

    `answer_prefix` (chat models) starts the assistant's answer for it, e.g. "Rating: ": the next
    token is then the rating, not the first word of a sentence about it."""
    demonstrations = demonstrations or []
    if answer_prefix and not (lm.family == "causal" and getattr(lm.tokenizer, "chat_template", None)):
        raise ValueError(f"answer_prefix opens a chat model's answer turn; {lm.name!r} has no chat "
                         "template (its prompt already ends with 'Answer:'): leave answer_prefix empty")
    template = getattr(lm.tokenizer, "chat_template", None)
    if lm.family == "causal" and template:
        out = []
        for prompt in prompts:
            messages = [{"role": "system", "content": SYSTEM_PROMPT}]
            for demo, answer in demonstrations:
                messages += [{"role": "user", "content": demo},
                             {"role": "assistant", "content": str(answer)}]
            messages.append({"role": "user", "content": prompt})
            out.append(lm.tokenizer.apply_chat_template(messages, tokenize=False,
                                                        add_generation_prompt=True) + answer_prefix)
        return out
    prefix = "".join(f"{demo}\nAnswer: {answer}\n\n" for demo, answer in demonstrations)
    suffix = "\nAnswer:" if lm.family != "encoder" else ""
    return [prefix + p + suffix for p in prompts]


def encode(lm: LoadedLM, texts: list[str], max_length: int | None = 512) -> list[list[int]]:
    """Token ids per text, unpadded (the collator pads each batch), cut from the right at
    `max_length` (None: never; prompts are shortened by `prompt_encodings` instead). Chat-formatted
    text already holds its special tokens."""
    chat = lm.family == "causal" and getattr(lm.tokenizer, "chat_template", None)
    enc = lm.tokenizer(texts, add_special_tokens=not chat, truncation=max_length is not None,
                       max_length=max_length)
    return enc["input_ids"]


class RatingDataset(torch.utils.data.Dataset):
    """Examples for the Trainer: token ids (or cached hidden states) and the rating."""

    def __init__(self, inputs: list, labels=None, key: str = "input_ids"):
        self.inputs, self.labels, self.key = inputs, labels, key

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, i):
        item = {self.key: self.inputs[i]}
        if self.labels is not None:
            item["labels"] = float(self.labels[i])
        return item


# --------------------------------------------------------------------------- the model


class RatingModel(nn.Module):
    """A language model with a rating head.

    head="classification": five logits, one per rating token (cross-entropy); the prediction
    is the expected rating under their softmax. head="regression": one number (MSE).

    `body` replaces the backbone's inner model when only its top layers are run from cached
    hidden states (see llmrec.cache); the forward pass then takes `inputs_embeds`.
    """

    def __init__(self, lm: LoadedLM, head: str = "regression", body: nn.Module | None = None,
                 init_rating: float = 3.5):
        super().__init__()
        if head not in ("classification", "regression"):
            raise ValueError(f"unknown head {head!r}; use 'classification' or 'regression'")
        self.family, self.head = lm.family, head
        self.model_name = lm.name
        dim = lm.hidden_size
        if lm.family == "seq2seq":
            if body is not None:
                raise ValueError("layer caching is implemented for decoder-only models")
            self.backbone = lm.model
            self.decoder_start = lm.model.config.decoder_start_token_id
        else:
            self.backbone = body if body is not None else lm.model.base_model
            pooler = getattr(self.backbone, "pooler", None)  # BERT's: never called here
            if isinstance(pooler, nn.Module):
                pooler.requires_grad_(False)  # (DDP refuses trained parameters without a gradient)
        self.rating_ids = rating_token_ids(lm.tokenizer) if head == "classification" else None
        if head == "classification":
            self.register_buffer("rating_values", torch.arange(1.0, 6.0))
            if lm.family == "causal":
                # the rows of the LM head for "1".."5": zero-shot predictions come for free
                self.score = nn.Linear(dim, 5, bias=False)
                out = lm.model.get_output_embeddings().weight
                self.score.weight.data.copy_(out[self.rating_ids].detach())
            elif lm.family == "encoder":
                self.score = nn.Linear(dim, 5)
        else:
            self.score = nn.Linear(dim, 1)
            nn.init.zeros_(self.score.weight)
            nn.init.constant_(self.score.bias, init_rating)  # start from the mean rating

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, labels=None):
        if self.family == "seq2seq":
            start = torch.full((attention_mask.shape[0], 1), self.decoder_start,
                               dtype=torch.long, device=attention_mask.device)
            out = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                                decoder_input_ids=start,
                                output_hidden_states=self.head == "regression")
            if self.head == "classification":
                scores = out.logits[:, 0, self.rating_ids]
            else:
                scores = self.score(out.decoder_hidden_states[-1][:, 0]).squeeze(-1)
        else:
            extra = {"use_cache": False} if self.family == "causal" else {}
            hidden = self.backbone(input_ids=input_ids, inputs_embeds=inputs_embeds,
                                   attention_mask=attention_mask, **extra).last_hidden_state
            if self.family == "causal":  # right padding: the last real token of each row
                last = attention_mask.sum(1) - 1
                rep = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
            else:  # encoder: mean over real tokens
                m = attention_mask.unsqueeze(-1).to(hidden.dtype)
                rep = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
            scores = self.score(rep)
            if self.head == "regression":
                scores = scores.squeeze(-1)
        loss = None
        if labels is not None:
            if self.head == "classification":
                loss = nn.functional.cross_entropy(scores.float(), labels.long() - 1)
            else:
                loss = nn.functional.mse_loss(scores.float(), labels.float())
        return {"loss": loss, "logits": scores}

    def expected_rating(self, scores: torch.Tensor) -> torch.Tensor:
        if self.head == "classification":
            return scores.float().softmax(-1) @ self.rating_values
        return scores.float()


@torch.no_grad()
def predict_with_share(model: RatingModel, lm: LoadedLM, dataset, collator,
                       batch_size: int = 64, autocast: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """predict_dataset's (expected ratings, scores), and per example the probability a
    decoder-only model gives the five rating tokens together out of its whole vocabulary: how
    much of its next token is a rating at all. The classification head reads only those five
    logits (their softmax always sums to 1), so the model's own output layer is run on the same
    last-token states, caught in the same pass."""
    if model.family != "causal" or model.head != "classification":
        raise ValueError("rating_token_share reads a decoder-only classification model's output "
                         f"layer; this one is {model.family}, {model.head}")
    states = []  # the last-token states the head reads, batch by batch
    hook = model.score.register_forward_hook(lambda _m, args, _out: states.append(args[0].detach()))
    try:
        pred, scores = predict_dataset(model, dataset, collator, batch_size=batch_size, autocast=autocast)
    finally:
        hook.remove()
    head, ids = lm.model.get_output_embeddings(), torch.tensor(model.rating_ids)
    share = [head(s.to(head.weight.device, head.weight.dtype)).float().softmax(-1)[:, ids].sum(-1)
             for s in states]
    return pred, scores, torch.cat(share).cpu().numpy()


def rating_token_share(model: RatingModel, lm: LoadedLM, dataset, collator, batch_size: int = 64) -> np.ndarray:
    """Only the rating tokens' share of `predict_with_share`."""
    return predict_with_share(model, lm, dataset, collator, batch_size)[2]


def add_lora(model: RatingModel, lm: LoadedLM, r: int = 8, alpha: int = 16, dropout: float = 0.05,
             target_modules: list[str] | None = None, layers: list[int] | None = None):
    """Wrap `model` with LoRA adapters (peft) on the backbone's attention projections; the rating
    head stays fully trainable. Returns the peft model."""
    # lazy: peft loads only where LoRA is asked for
    from peft import LoraConfig, get_peft_model

    targets = target_modules or LORA_TARGETS.get(lm.model_type)
    if not targets:
        raise ValueError(f"no default LoRA target modules for model type {lm.model_type!r}; "
                         f"pass target_modules=[...] (names of its linear layers)")
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets,
                        layers_to_transform=layers, modules_to_save=["score"]
                        if hasattr(model, "score") else None, bias="none")
    return get_peft_model(model, config)


def count_parameters(model: nn.Module, lm: LoadedLM | None = None) -> dict[str, int]:
    """Parameters `model` holds ("total") and trains ("trainable"). With the `lm` it was built
    from, also the language model's own count and the part of it the model does not hold: the
    frozen lower layers and embeddings that ran once into the layer cache (and the output
    layer, whose five rating rows the classification head copies)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    out = {"total": total, "trainable": trainable}
    if lm is not None:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft-wrapped
        backbone = getattr(base, "backbone", None)
        whole = sum(p.numel() for p in lm.model.parameters())
        copied = backbone is not None and backbone is not lm.model and backbone is not lm.model.base_model
        held = sum(p.numel() for n, p in backbone.named_parameters() if "lora_" not in n) if copied else whole
        out |= {"language model": whole, "frozen, in the cache": whole - held}
    return out


def parameter_line(model: nn.Module, lm: LoadedLM) -> str:
    """count_parameters in one line a learner reads, e.g. "134.5M parameters in smollm2-135m:
    127.4M frozen (run once into the layer cache), 7.1M in the trained model, 7.1M trained"."""
    c = count_parameters(model, lm)
    m = lambda n: f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n:,}"
    frozen = (f"{m(c['frozen, in the cache'])} frozen (run once into the layer cache), "
              if c["frozen, in the cache"] else "")
    return (f"{m(c['language model'])} parameters in {lm.name}: {frozen}{m(c['total'])} in the "
            f"trained model, {m(c['trainable'])} trained ({c['trainable'] / c['language model']:.2%} of them)")


# --------------------------------------------------------------------------- save / load


def save_rating_model(model: RatingModel, folder: str | Path, meta: dict | None = None) -> Path:
    """Save the weights (safetensors) and what is needed to rebuild the model (JSON)."""
    folder = Path(folder)
    info = {"model_name": model.model_name, "family": model.family, "head": model.head,
            **(meta or {})}
    with atomic_dir(folder) as tmp:
        save_model(model, str(tmp / "rating_model.safetensors"))  # handles tied weights
        (tmp / "rating_model.json").write_text(json.dumps(info, indent=2) + "\n")
    return folder


def load_rating_model(folder: str | Path, lm: LoadedLM | None = None) -> RatingModel:
    """Rebuild a saved RatingModel; its weights come from the folder, not from the hub."""

    folder = Path(folder)
    info = json.loads((folder / "rating_model.json").read_text())
    lm = lm or load_lm(info["model_name"])
    body = top_layers_body(lm, info["top_layers"]) if info.get("top_layers") else None
    model = RatingModel(lm, info["head"], body=body)
    load_model(model, str(folder / "rating_model.safetensors"))
    return model


# --------------------------------------------------------------------------- examples → inputs


def prompt_encodings(lm: LoadedLM, processed, examples, *, history_genres: bool = True,
                     demonstrations: list[tuple[str, int]] | None = None,
                     extras: list[str] | None = None, max_length: int = 1024,
                     answer_prefix: str = "") -> list[list[int]]:
    """Token ids of the kit's prompt for each example, formatted for `lm`'s family."""
    limit = prompt_limit(lm, max_length)
    prompts = build_prompts(processed, examples, history_genres=history_genres, extras=extras)
    enc = encode(lm, format_prompts(lm, prompts, demonstrations, answer_prefix), max_length=None)
    long = [i for i, ids in enumerate(enc) if len(ids) > limit]
    if not long:
        return enc
    # Too long: drop the oldest history lines of that prompt (never its question, candidate or
    # the demonstrations), keeping as many recent ones as fit: a bisection over every long
    # prompt at once, so the prompts are rebuilt a few times, not once per prompt and step.
    sub = examples.iloc[long]
    n_hist = np.array([int((h > 0).sum()) for h in processed.hist_items(sub)])

    def encoded(keep) -> list[list[int]]:
        p = build_prompts(processed, sub, history_genres=history_genres, keep=list(keep),
                          extras=None if extras is None else [extras[i] for i in long])
        return encode(lm, format_prompts(lm, p, demonstrations, answer_prefix), max_length=None)

    bare = encoded(np.zeros(len(long), dtype=int))
    if max(map(len, bare)) > limit:
        raise ValueError(
            f"a prompt does not fit in {limit} tokens even with no history line: its question"
            f"{' and the ' + str(len(demonstrations)) + ' demonstrations' if demonstrations else ''}"
            f" take {max(map(len, bare))} tokens. Use fewer demonstrations (or shorter ones: "
            "history_genres=False), or a model that reads longer prompts.")
    lo, hi = np.zeros(len(long), dtype=int), n_hist.copy()  # lo always fits, hi does not
    while (hi - lo > 1).any():
        mid = np.where(hi - lo > 1, (lo + hi) // 2, lo)
        fits = np.array([len(e) <= limit for e in encoded(mid)])
        lo, hi = np.where(fits, mid, lo), np.where(fits | (hi - lo <= 1), hi, mid)
    for i, ids in zip(long, encoded(lo)):
        enc[i] = ids
    dropped = int((n_hist - lo).sum())
    print(f"{len(long)} of {len(enc)} prompts were longer than {limit} tokens: their oldest "
          f"{dropped} history lines in all were left out (the candidate and the question kept).")
    return enc


def prompt_limit(lm: LoadedLM, max_length: int) -> int:
    """The most tokens a prompt may have: `max_length`, or fewer where the model has fewer
    positions (BERT-family encoders such as MiniLM: 512)."""
    cfg = getattr(lm.model, "config", None)
    if cfg is None or getattr(cfg, "relative_attention_num_buckets", None):
        return max_length  # T5's relative positions have no table to run out of (its n_positions is no limit)
    positions = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
    if positions and "roberta" in str(getattr(cfg, "model_type", "")):
        positions -= (cfg.pad_token_id or 0) + 1  # RoBERTa's positions start after the padding id
    return min(max_length, positions) if positions else max_length


def demonstrations_for(processed, pool, k: int, seed: int, history_genres: bool = True,
                       exclude_users=None) -> list[tuple[str, int]]:
    """k few-shot demonstrations: training examples of other users, with their true ratings,
    one per rating value where possible, drawn reproducibly."""
    if k <= 0:
        return []
    pool = pool if exclude_users is None else pool[~pool.user_idx.isin(exclude_users)]
    pool = pool[pool.hist_len == processed.history_len]
    picks = pool.groupby("rating").sample(1, random_state=seed).sample(frac=1, random_state=seed)
    chosen = picks.iloc[:k]
    if len(chosen) < k:
        chosen = pool.sample(k, random_state=seed)
    texts = build_prompts(processed, chosen, history_genres=history_genres)
    return list(zip(texts, chosen.rating.astype(int).tolist()))


CACHED_FAMILIES = ("causal", "encoder")  # T5 is trained whole (or with LoRA), never cached


def make_dataset(lm: LoadedLM, processed, examples, *, top_layers: int | None = None,
                 name: str = "examples", history_genres: bool = True,
                 demonstrations: list[tuple[str, int]] | None = None,
                 extras: list[str] | None = None, batch_size: int = 16,
                 answer_prefix: str = "", autocast: bool = False) -> RatingDataset:
    """The examples as a dataset for `lm`: token ids, or — when `top_layers` is set for a
    decoder-only or BERT-like encoder model — the cached hidden states entering its top
    `top_layers` layers (one cache per model, split layer, dtype and prompt tokens, shared by
    every notebook that asks for the same prompts). `autocast`: the frozen layers in bf16 autocast
    (PRECISION's choice; its own cache)."""

    enc = prompt_encodings(lm, processed, examples, history_genres=history_genres,
                           demonstrations=demonstrations, extras=extras, answer_prefix=answer_prefix)
    labels = examples["rating"].to_numpy()
    if top_layers is None or lm.family not in CACHED_FAMILIES:
        return RatingDataset(enc, labels)
    hidden = cached_hidden(lm, top_layers, enc, name=name, batch_size=batch_size, autocast=autocast)
    return RatingDataset(hidden, labels, key="inputs_embeds")


@torch.no_grad()
def item_embeddings(lm: LoadedLM, processed, batch_size: int = 64) -> torch.Tensor:
    """One unit-length vector per item_idx (row 0, the padding, is zero): the frozen model's
    token states over the item's text ("Title (year): genres", `prompts.item_texts`), averaged
    over its tokens — how all-MiniLM-L6-v2 makes a sentence embedding. Every item is encoded
    once, through the layer cache (top_layers = 0: the whole model, no trained layer), so a
    rerun or another notebook loads it."""
    texts = item_texts(processed)
    enc = [e or [lm.tokenizer.pad_token_id or 0] for e in encode(lm, texts[1:], max_length=64)]
    hidden = cached_hidden(lm, 0, enc, name=f"{lm.name}-items", batch_size=batch_size)
    out = torch.zeros(len(texts), lm.hidden_size)
    out[1:] = torch.stack([h.float().mean(0) for h in hidden])
    out[1:] = torch.nn.functional.normalize(out[1:], dim=1)
    return out


def build_rating_model(lm: LoadedLM, head: str, *, top_layers: int | None = None,
                       lora: bool = False, lora_r: int = 8, init_rating: float = 3.5):
    """A RatingModel over the whole backbone, or over its top `top_layers` layers (decoder-only
    and encoder models, fed from the cache), optionally with LoRA adapters instead of full
    weights."""

    cached = top_layers is not None and lm.family in CACHED_FAMILIES
    body = top_layers_body(lm, top_layers) if cached else None
    model = RatingModel(lm, head, body=body, init_rating=init_rating)
    if lora:
        model = add_lora(model, lm, r=lora_r, alpha=2 * lora_r)
    return model


def collator_for(lm: LoadedLM):
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    return functools.partial(pad_batch, pad_id=pad)
