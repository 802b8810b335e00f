"""llmrec: the shared library of the LLM-for-recommendation course kit.

Its top level is the science the notebooks teach (data, splits, prompts, baselines, language
models, ONCE, metrics); llmrec.course is the machinery that runs, records, checks and publishes
the course, and nothing here imports it (docs/ARCHITECTURE.md)."""

import os as _os

from .paths import scratch_dir as _scratch_dir

# torch._dynamo, which transformers imports, makes its compiler cache on import: in /tmp
# (torchinductor_<user>) unless told otherwise. Keep it in the kit's cache, unless the user chose.
_os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(_scratch_dir() / "torchinductor"))
