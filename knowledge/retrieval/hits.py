"""The shape of a retrieved passage, as every retrieval query selects it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SearchHit:
    chunk_id: int
    document_id: int
    title: str
    text: str
    heading: str
    page: int | None
    position: int
    score: float
    # Cosine similarity of the chunk to the query (1 = same direction), whichever leg found it.
    similarity: float | None = None


# Every query that returns passages selects these columns first (c: chunk, d: document), so
# that the row's allowed_roles (index 7) can be checked against the scope in Python too.
HIT_COLUMNS = """
    c.id, c.document_id, d.title, c.text, c.heading, c.page, c.position, c.allowed_roles
"""
ALLOWED_ROLES_COLUMN = 7


def hit_from_row(row: tuple, *, score: float) -> SearchHit:
    return SearchHit(*row[:ALLOWED_ROLES_COLUMN], score=score)
