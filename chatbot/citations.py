"""A numbered source of an answer: the one shape answers, streams, history, the web UI and
the ``ask`` command share."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Citation:
    """``available`` is False when the reader's scope no longer covers the passage; such a
    citation says nothing but its number (chatbot.serializers.CitationSerializer)."""

    index: int
    available: bool = True
    document_id: int | None = None
    title: str = ""
    chunk_id: int | None = None
    snippet: str = ""
    score: float = 0.0  # the retrieval score, kept for the audit trail; never shown

    def withheld(self) -> Citation:
        return Citation(index=self.index, available=False)
