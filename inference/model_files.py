"""Where the generator's files live and what kind of model they hold.

No torch, no transformers, no Django: the web side uses this to find the prepared model's
tokenizer (prompt token budgets), the inference server to find what to load. Nothing here
converts or downloads anything; ``inference.prepare`` does the one-time conversion.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
from pathlib import Path
from typing import Literal

DEFAULT_MODEL_DIRNAME = "gemma3-270m"
MARKER_FILENAME = "prepared.json"
MARKER_VERSION = 2

logger = logging.getLogger(__name__)

ModelKind = Literal["base", "instruct"]
MODEL_KINDS: tuple[ModelKind, ...] = ("base", "instruct")


def default_model_dir(data_dir: Path) -> Path:
    """Where the packaged default model is converted to, under the data directory."""
    return Path(data_dir) / "models" / DEFAULT_MODEL_DIRNAME


def locate_model_dir(*, data_dir: Path, override: str | Path | None = None) -> Path | None:
    """The prepared model directory, or None while it is not prepared. Never converts.

    ``override`` is a local Hugging Face model directory (INFERENCE_MODEL) that replaces the
    packaged default.
    """
    if override:
        path = Path(override).expanduser().resolve()
        return path if (path / "config.json").is_file() else None
    target = default_model_dir(data_dir)
    return target if marker_is_valid(target) else None


def marker_is_valid(model_dir: Path, *, verify_checksums: bool = False) -> bool:
    """True when ``model_dir`` holds a finished conversion whose files match its marker.

    File sizes are always checked (cheap); sha256 checksums only with ``verify_checksums``.
    """
    try:
        marker = json.loads((model_dir / MARKER_FILENAME).read_text())
    except (OSError, ValueError):
        return False
    if marker.get("version") != MARKER_VERSION or not isinstance(marker.get("files"), dict):
        return False
    for name, meta in marker["files"].items():
        path = model_dir / name
        try:
            if path.stat().st_size != meta["size"]:
                return False
        except (OSError, KeyError, TypeError):
            return False
        if verify_checksums and sha256_file(path) != meta.get("sha256"):
            return False
    return bool(marker["files"])


def model_kind(
    model_dir: Path | None, *, forced: str = "", reported: str | None = None
) -> ModelKind:
    """``instruct`` when the model has a chat template, else ``base``.

    ``forced`` (INFERENCE_MODEL_KIND: base or instruct) overrides the detection, and a kind
    recorded in the preparation marker wins over the tokenizer files (the default model's
    tokenizer carries a chat template although the weights are a base model). Without a
    model directory (an external server) the kind is the one the server ``reported`` (this
    project's server does in /v1/models; vLLM and TGI do not), else ``base``, with a warning
    logged once.
    """
    forced = (forced or "").strip().lower()
    if forced in MODEL_KINDS:
        return forced  # type: ignore[return-value]
    if model_dir is None:
        if reported in MODEL_KINDS:
            return reported  # type: ignore[return-value]
        _warn_kind_unknown()
        return "base"
    with contextlib.suppress(OSError, ValueError):
        recorded = json.loads((model_dir / MARKER_FILENAME).read_text()).get("kind")
        if recorded in MODEL_KINDS:
            return recorded
    return "instruct" if has_chat_template(model_dir) else "base"


@functools.cache
def _warn_kind_unknown() -> None:
    logger.warning(
        "nothing tells whether the served model is a base or an instruct model (no local "
        "model directory, and the inference server does not say): prompting it as a base "
        "model; set INFERENCE_MODEL_KIND=instruct for a chat model, or =base to silence this"
    )


def max_model_len(model_dir: Path) -> int | None:
    """The context (prompt and answer tokens together) the model's config.json declares."""
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None
    for section in (config, config.get("text_config") or {}):
        value = section.get("max_position_embeddings")
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def has_chat_template(model_dir: Path) -> bool:
    if (model_dir / "chat_template.jinja").is_file() or (
        model_dir / "chat_template.json"
    ).is_file():
        return True
    try:
        config = json.loads((model_dir / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(config.get("chat_template"))


def model_name(model_dir: Path) -> str:
    return model_dir.name


# The answer model's adapter that `make run` serves with the packaged default model: trained
# by `manage.py finetune` on the synthetic workspace, committed with its training record.
SHIPPED_ADAPTER_DIR = Path(__file__).resolve().parent / "adapters" / "answer"
ADAPTER_SEPARATOR = "+"  # a served model's name: "<base model>+<adapter>"


def adapter_dir_for(setting: str, *, override_model: str = "") -> Path | None:
    """The adapter to merge, from INFERENCE_ADAPTER: ``none`` for the base model, a directory,
    or empty for the shipped adapter, which is for the packaged default model only (another
    model, INFERENCE_MODEL, gets none unless one is named). ValueError when a named directory
    holds no adapter."""
    if setting.strip().lower() == "none":
        return None
    if not setting.strip():
        if override_model or not (SHIPPED_ADAPTER_DIR / "adapter_config.json").is_file():
            return None
        return SHIPPED_ADAPTER_DIR
    path = Path(setting).expanduser().resolve()
    if not (path / "adapter_config.json").is_file():
        raise ValueError(
            f"INFERENCE_ADAPTER={setting} is not an adapter directory (no adapter_config.json); "
            "use `none` for the base model"
        )
    return path


def served_name(model_dir: Path, adapter_dir: Path | None) -> str:
    if adapter_dir is None:
        return model_name(model_dir)
    return f"{model_name(model_dir)}{ADAPTER_SEPARATOR}{adapter_dir.name}"


def base_of_served_name(name: str) -> str:
    """The base model's name in a served name ("gemma3-270m+answer" -> "gemma3-270m")."""
    return name.split(ADAPTER_SEPARATOR, 1)[0]


def tokenizer_file(model_dir: Path | None) -> Path | None:
    """The model's ``tokenizer.json`` (readable by the ``tokenizers`` library), if any."""
    path = model_dir / "tokenizer.json" if model_dir else None
    return path if path is not None and path.is_file() else None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(4 * 1024 * 1024):
            digest.update(block)
    return digest.hexdigest()
