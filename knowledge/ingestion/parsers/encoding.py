"""Bytes to text for the text formats: BOM, else UTF-8, else a guessed legacy encoding."""

from __future__ import annotations

import unicodedata

import charset_normalizer

from knowledge.ingestion.parsers.base import ParseError

# Text that is more than this share of control characters is binary data, not text.
MAX_CONTROL_CHAR_RATIO = 0.02

_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)


_PREFERRED_LEGACY_ENCODINGS = ("cp1252", "latin_1", "iso8859_15")


def _decode_text(data: bytes) -> str:
    """Decode by BOM, else strict UTF-8, else charset-normalizer's best guess."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return _checked_text(data.decode(encoding))
            except UnicodeDecodeError as exc:
                raise ParseError(
                    f"The text could not be decoded: it starts with a {encoding} byte order "
                    f"mark but is not valid {encoding}."
                ) from exc
    _reject_binary(data)
    try:
        return _checked_text(data.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    return _checked_text(_guess_legacy_encoding(data))


def _guess_legacy_encoding(data: bytes) -> str:
    matches = charset_normalizer.from_bytes(data)
    best = matches.best()
    if best is None:
        raise ParseError(
            "The text could not be decoded: it is not UTF-8 and no other encoding fits."
        )
    # charset-normalizer cannot tell the Latin code pages apart on accented Western text and
    # breaks the tie alphabetically (cp1250); Windows-1252 is by far the likelier source.
    for match in matches:
        if (
            match.encoding in _PREFERRED_LEGACY_ENCODINGS
            and match.chaos <= best.chaos + 0.01
            and match.coherence >= best.coherence - 0.01
        ):
            return str(match)
    return str(best)


def _reject_binary(data: bytes) -> None:
    if data.startswith(tuple(bom for bom, _ in _BOMS)):
        return  # UTF-16 and UTF-32 text is full of NUL bytes.
    if b"\x00" in data[:65536]:
        raise ParseError("The file does not look like text (it contains binary data).")


def _checked_text(text: str) -> str:
    sample = text[:65536]
    control = sum(
        1 for char in sample if unicodedata.category(char) == "Cc" and char not in "\t\n\r\x0c"
    )
    if "\x00" in sample or control > MAX_CONTROL_CHAR_RATIO * max(len(sample), 1):
        raise ParseError("The file does not look like text (it contains binary data).")
    return text
