"""Parse an uploaded file in a child process bounded in memory and time.

A crafted or broken file can make a parser loop, exhaust memory or crash the interpreter;
in a child process that costs the child only, and the worker records why. The children
import no Django (they have no database access and get no secrets in their environment)
and no torch. They answer in JSON, never pickle, so a compromised child cannot run code in
the worker. Plain subprocesses rather than multiprocessing: Celery's pool processes are
daemonic and may not start multiprocessing children.

A fork server: each worker process keeps one helper (`python -m
knowledge.ingestion.sandbox`) that has imported every parser and waits on stdin. For each
file it forks a child, which sets its memory and CPU limits, parses that one file, answers
and exits, so nothing a file does outlives it; the helper times the child and reports how
it ended. Forking a warm process costs milliseconds where starting an interpreter and the
parser libraries costs 0.15-0.5 s of CPU per document, which a 2-core machine spends
nowhere else than on embedding.

Protocol, on the helper's stdin: one JSON line (the request, with the file's size), then
the file's bytes. On its stdout: ``R<n>\n`` and n bytes of JSON (the child's answer, when
it gave one), then ``S{"code": <exit status or -signal>, "timed_out": <bool>}\n``.
"""

from __future__ import annotations

import json
import logging
import os
import select
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


class ParseBoundExceeded(ParseError):
    """The child ran out of memory or time, or died; str() names what happened."""


def child_command() -> list[str]:
    return [sys.executable, "-m", _CHILD_MODULE]


_helper: subprocess.Popen | None = None


def _running_helper() -> subprocess.Popen:
    global _helper
    if _helper is None or _helper.poll() is not None:
        _helper = subprocess.Popen(
            child_command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=_PROJECT_ROOT,
            env=child_environment(),
        )
    return _helper


def _stop_helper() -> None:
    global _helper
    if _helper is not None:
        _helper.kill()
        _helper.wait()
        _helper = None


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
        "timeout_seconds": timeout_seconds,
        "size": len(data),
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
    helper = _running_helper()
    try:
        helper.stdin.write(request)
        helper.stdin.flush()
        # The helper times the child; this deadline only catches a helper that hangs.
        answer, ending = _read_answer(helper, deadline=started + timeout_seconds + 10)
    except TimeoutError:  # the helper hangs
        _stop_helper()
        answer, ending = None, {"code": None, "timed_out": True}
    except (OSError, EOFError):  # the helper died (killed with its child): say how
        try:
            returncode = helper.wait(timeout=5)
        except subprocess.TimeoutExpired:
            returncode = None
        _stop_helper()
        answer, ending = None, {"code": returncode, "timed_out": returncode is None}
    except BaseException:  # Celery's soft time limit, a shutdown: never leave it running
        _stop_helper()
        raise
    logger.debug("parsed %r in a child in %.3f s", filename, time.monotonic() - started)
    if ending["timed_out"]:
        raise ParseBoundExceeded(_too_slow(timeout_seconds))
    returncode = ending["code"]
    if returncode == 0 and answer is not None:
        try:
            reply = json.loads(answer.decode("utf-8", "surrogatepass"))
        except ValueError:
            reply = {"outcome": "garbled"}
        return _parsed_or_raise(reply)
    logger.warning("the parser child for %r ended with status %s", filename, returncode)
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


def _read_answer(helper: subprocess.Popen, *, deadline: float) -> tuple[bytes | None, dict]:
    """The child's answer (if any) and how it ended, read from the helper's frames."""
    fd = helper.stdout.fileno()
    buffer = bytearray()
    answer = None
    while True:
        if buffer[:1] == b"R" and b"\n" in buffer:
            newline = buffer.index(b"\n")
            size = int(buffer[1:newline])
            if len(buffer) >= newline + 1 + size:
                answer = bytes(buffer[newline + 1 : newline + 1 + size])
                del buffer[: newline + 1 + size]
                continue
        elif buffer[:1] == b"S" and b"\n" in buffer:
            return answer, json.loads(buffer[1 : buffer.index(b"\n")])
        elif buffer[:1] not in (b"", b"R", b"S"):
            raise EOFError("the parse helper wrote something it should not have")
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise TimeoutError
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            raise EOFError
        buffer += chunk


def _parsed_or_raise(reply: dict) -> ParsedDocument:
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


# --- the child -----------------------------------------------------------------------------


def _serve() -> None:
    """The helper: import every parser once, then fork a bounded child per file."""
    import faulthandler

    faulthandler.enable()  # a crash leaves a Python traceback in the worker's log
    frames = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever a library prints goes to stderr, never into the frames
    import_every_format()
    while line := sys.stdin.buffer.readline():  # until the worker goes away
        request = json.loads(line)
        data = sys.stdin.buffer.read(request["size"])
        pid = os.fork()
        if pid == 0:
            _parse_in_child(data, request, frames)
        del data
        code, timed_out = _wait_for(pid, timeout=request["timeout_seconds"])
        ending = json.dumps({"code": code, "timed_out": timed_out}).encode()
        frames.write(b"S" + ending + b"\n")
        frames.flush()


def _wait_for(pid: int, *, timeout: float) -> tuple[int, bool]:
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), False
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return -signal.SIGKILL, True
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def _parse_in_child(data: bytes, request: dict, frames) -> None:
    """In the forked child: bound it, parse, answer, and exit without returning."""
    import resource

    try:
        sys.stdin.close()
        memory = request["max_memory_bytes"]
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        # CPU time bounds a child whose helper died and so can no longer time it out.
        cpu = request["max_cpu_seconds"]
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no gigabyte core files
        reply = _parse_reply(data, request)
        del data
        encoded = json.dumps(reply, ensure_ascii=False).encode("utf-8", "surrogatepass")
        frames.write(b"R%d\n" % len(encoded) + encoded)
        frames.flush()
    except MemoryError:
        os._exit(_EXIT_OUT_OF_MEMORY)
    except BaseException:
        import traceback

        traceback.print_exc()
        os._exit(1)
    sys.stderr.flush()
    os._exit(0)  # never return into the helper's loop; skip the interpreter's teardown


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
    _serve()
