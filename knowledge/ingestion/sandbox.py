"""Parse an uploaded file in a child process bounded in memory and time.

A crafted or broken file can make a parser loop, exhaust memory or crash the interpreter;
in a child (a fresh interpreter, `python -m knowledge.ingestion.sandbox`) that costs the
child only, and the worker records why. The child imports the one parser the file needs and
nothing else: no Django (it has no database access and gets no secrets in its environment)
and no torch. It answers in JSON, never pickle, so a compromised child cannot run code in
the worker. A plain subprocess rather than multiprocessing: Celery's pool processes are
daemonic and may not start multiprocessing children.

Protocol: one JSON line (the request) and the file's bytes on stdin; one JSON object on
stdout and exit status 0, or exit status _EXIT_OUT_OF_MEMORY.

Each child parses one file and exits, so nothing a file does to it outlives that file. Its
start (a fresh interpreter and the parser libraries, 0.15-0.3 s) is taken off the path: the
worker keeps one spare child started, with every parser imported, waiting on stdin, and
starts the next spare as soon as a parse is over, so that its start overlaps the document's
embedding.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from knowledge.ingestion.parsers import (
    DEFAULT_MAX_UNPACKED_BYTES,
    DEFAULT_MAX_XML_BYTES,
    ParsedDocument,
    ParseError,
    Section,
    UnsupportedType,
    import_every_format,
    parse_document,
)
from knowledge.ingestion.parsers.base import _describe

logger = logging.getLogger(__name__)

_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])
_CHILD_MODULE = "knowledge.ingestion.sandbox"
_EXIT_OUT_OF_MEMORY = 3
# What the child inherits from the worker's environment; DATABASE_URL, SECRET_KEY and
# other credentials are left behind.
_INHERITED_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "PYTHONPATH")
_STDERR_LOGGED_CHARS = 4000


class ParseBoundExceeded(ParseError):
    """The child ran out of memory or time, or died; str() names what happened."""


def child_command(*, warm: bool = False) -> list[str]:
    return [sys.executable, "-m", _CHILD_MODULE, *(["--warm"] if warm else [])]


_spare: subprocess.Popen | None = None


def _start_child() -> subprocess.Popen:
    return subprocess.Popen(
        child_command(warm=True),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=_PROJECT_ROOT,
        env=child_environment(),
    )


def _take_child() -> subprocess.Popen:
    """The waiting spare, or a new child if there is none (or it died)."""
    global _spare
    child, _spare = _spare, None
    return child if child is not None and child.poll() is None else _start_child()


def _start_spare() -> None:
    """Started once a parse is over, so that it warms up during the embedding, not
    competing with the parse for the CPU."""
    global _spare
    _spare = _start_child()


def child_environment() -> dict[str, str]:
    env = {name: os.environ[name] for name in _INHERITED_ENVIRONMENT if name in os.environ}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PROJECT_ROOT, env.get("PYTHONPATH")]))
    return env


def encode_request(
    *,
    data: bytes,
    filename: str,
    max_memory_mb: int,
    timeout_seconds: float,
    max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
    max_xml_bytes: int = DEFAULT_MAX_XML_BYTES,
) -> bytes:
    request = {
        "filename": filename,
        "max_memory_bytes": max_memory_mb * 1024 * 1024,
        "max_cpu_seconds": int(timeout_seconds) + 2,
        "max_unpacked_bytes": max_unpacked_bytes,
        "max_xml_bytes": max_xml_bytes,
    }
    return json.dumps(request).encode() + b"\n" + data


def parse_document_in_child(
    *,
    data: bytes,
    filename: str,
    max_memory_mb: int,
    timeout_seconds: float,
    max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
    max_xml_bytes: int = DEFAULT_MAX_XML_BYTES,
) -> ParsedDocument:
    """parse_document, run in a child limited to max_memory_mb of address space and
    timeout_seconds of wall-clock time.

    Raises what parse_document raises, with the same reasons, and ParseBoundExceeded (a
    ParseError naming the bound or the signal) when the child runs out of memory or time,
    dies, or fails in a way parse_document never reports.
    """
    request = encode_request(
        data=data,
        filename=filename,
        max_memory_mb=max_memory_mb,
        timeout_seconds=timeout_seconds,
        max_unpacked_bytes=max_unpacked_bytes,
        max_xml_bytes=max_xml_bytes,
    )
    started = time.monotonic()
    child = _take_child()
    try:
        stdout, stderr = child.communicate(request, timeout=timeout_seconds)
    except subprocess.TimeoutExpired as exc:
        _kill(child)
        raise ParseBoundExceeded(_too_slow(timeout_seconds)) from exc
    except BrokenPipeError:  # it died before reading the whole file: see its status
        stdout, stderr = b"", child.stderr.read()
        child.wait()
    except BaseException:  # Celery's soft time limit, a shutdown: never leave it running
        _kill(child)
        raise
    finally:
        _start_spare()
    logger.debug("parsed %r in a child in %.3f s", filename, time.monotonic() - started)
    returncode = child.returncode
    if returncode == 0:
        try:
            reply = json.loads(stdout.decode("utf-8", "surrogatepass"))
        except ValueError:
            reply = {"outcome": "garbled"}
        return _parsed_or_raise(reply, stderr=stderr)
    _log_stderr(filename, returncode, stderr)
    if returncode == _EXIT_OUT_OF_MEMORY:
        raise ParseBoundExceeded(_out_of_memory(max_memory_mb))
    if returncode == -signal.SIGXCPU:
        raise ParseBoundExceeded(_too_slow(timeout_seconds))
    if returncode < 0:
        name = signal.Signals(-returncode).name
        raise ParseBoundExceeded(
            f"The parser crashed on this file (it was killed by {name}); the file may be "
            "damaged or crafted, or need more than the "
            f"{max_memory_mb} MB memory limit (INGEST_PARSE_MAX_MEMORY_MB)."
        )
    raise ParseBoundExceeded(
        f"The parser stopped unexpectedly on this file (exit status {returncode})."
    )


def _kill(child: subprocess.Popen) -> None:
    child.kill()
    child.communicate()


def _parsed_or_raise(reply: dict, *, stderr: bytes) -> ParsedDocument:
    outcome = reply.get("outcome")
    if outcome == "parsed":
        return ParsedDocument(
            sections=[Section(text=t, heading=h, page=p) for t, h, p in reply["sections"]],
            title=reply["title"],
        )
    if outcome == "ParseError":
        raise ParseError(reply["reason"])
    if outcome == "UnsupportedType":
        raise UnsupportedType(reply["reason"])
    if outcome == "out_of_memory":
        raise ParseBoundExceeded(_out_of_memory(reply["max_memory_mb"]))
    logger.error("the parser child failed: %s\n%s", reply.get("error"), reply.get("traceback"))
    raise ParseBoundExceeded(
        f"Ingestion failed unexpectedly ({reply.get('error') or 'no answer'} in the parser)."
    )


def _too_slow(timeout_seconds: float) -> str:
    return (
        f"Parsing the file took longer than the {timeout_seconds:g} s time limit "
        "(INGEST_PARSE_TIMEOUT_SECONDS); the file may be damaged or crafted, or too large: "
        "split it and upload the parts."
    )


def _out_of_memory(max_memory_mb: int) -> str:
    return (
        f"Parsing the file needed more than the {max_memory_mb} MB memory limit "
        "(INGEST_PARSE_MAX_MEMORY_MB); the file may be damaged or crafted, or too large: "
        "split it and upload the parts."
    )


def _log_stderr(filename: str, returncode: int, stderr: bytes) -> None:
    text = stderr.decode("utf-8", "replace")[-_STDERR_LOGGED_CHARS:]
    logger.warning("the parser child for %r ended with status %s: %s", filename, returncode, text)


# --- the child -----------------------------------------------------------------------------


def _serve_one_parse() -> None:
    import faulthandler
    import resource

    faulthandler.enable()  # a crash leaves a Python traceback in the worker's log
    reply_stream = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever a library prints goes to stderr, never into the reply
    if "--warm" in sys.argv:
        import_every_format()
    line = sys.stdin.buffer.readline()
    if not line:  # a spare whose worker ended without a file for it
        return
    request = json.loads(line)
    memory = request["max_memory_bytes"]
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    # CPU time bounds a child whose worker died and so can no longer time it out.
    cpu = request["max_cpu_seconds"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no gigabyte core files
    try:
        data = sys.stdin.buffer.read()
        reply = _parse_reply(data, request)
        del data
        encoded = json.dumps(reply, ensure_ascii=False).encode("utf-8", "surrogatepass")
    except MemoryError:
        os._exit(_EXIT_OUT_OF_MEMORY)
    reply_stream.write(encoded)
    reply_stream.flush()
    sys.stderr.flush()
    os._exit(0)  # the reply is out: skip the interpreter's teardown (tens of ms)


def _parse_reply(data: bytes, request: dict) -> dict:
    out_of_memory = {
        "outcome": "out_of_memory",
        "max_memory_mb": request["max_memory_bytes"] // (1024 * 1024),
    }
    try:
        parsed = parse_document(
            data=data,
            filename=request["filename"],
            max_unpacked_bytes=request["max_unpacked_bytes"],
            max_xml_bytes=request["max_xml_bytes"],
        )
    except MemoryError:
        return out_of_memory
    except (ParseError, UnsupportedType) as exc:
        if _caused_by_memory_error(exc):
            return out_of_memory
        return {"outcome": type(exc).__name__, "reason": str(exc)}
    except Exception as exc:
        if _caused_by_memory_error(exc):
            return out_of_memory
        import traceback

        return {"outcome": "error", "error": _describe(exc), "traceback": traceback.format_exc()}
    sections = [[s.text, s.heading, s.page] for s in parsed.sections]
    return {"outcome": "parsed", "title": parsed.title, "sections": sections}


def _caused_by_memory_error(exc: BaseException) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, MemoryError):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


if __name__ == "__main__":
    _serve_one_parse()
