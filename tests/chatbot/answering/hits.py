"""Search hits as the answer composer reads them, for tests that fake a search."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    document_id: int
    title: str
    text: str
    heading: str = ""
    page: int | None = None
    position: int = 0
    score: float = 0.03
    similarity: float | None = None


HOTEL_HITS = [
    Hit(
        11,
        1,
        "Travel policy",
        "Hotel costs are reimbursed up to 140 EUR per night in Germany "
        "and 180 EUR per night in London. Breakfast is included.",
    ),
    Hit(12, 2, "Expense rules", "Receipts must be submitted within 30 days of the trip."),
]
