"""A synthetic workspace for training the answer model: fictional companies, their passages
and verified questions about every fact in them.

Pure (no Django, no model). Each topic is written once as templates; a company instantiates
it for two or three qualifiers (two warehouses, two contract tiers, two seasons), which makes
near-miss twins: passages in the same words whose figures differ, so the only way to answer
is to read the qualifier the question names. Tables are written as the ingestion pipeline
writes them (a header line and rows, cells joined by " | "), so a question about one row has
its neighbours as distractors inside the same passage. Questions are worded unlike their
answer sentence (several wordings per fact), and every answer's figure is copied from its
passage (``Fact.figure`` is checked to be a substring of ``Passage.text``).

None of the companies, places or figures belong to the demo workspace or a gold set: the
adapter must learn the task, not the documents it is measured on.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

COMPANIES = (
    "Brightwell Logistics",
    "Orchid Dental Group",
    "Kestrel Software",
    "Marlow Hotels",
    "Tannery Foods",
    "Halden Freight",
    "Lumen Clinics",
    "Quarry Lane Bakeries",
)


@dataclass(frozen=True)
class Fact:
    question: str
    answer: str  # one plain sentence holding ``figure``
    figure: str  # copied exactly from the passage
    family: str  # the template it came from (validation holds whole families out)


@dataclass(frozen=True)
class Passage:
    key: str  # unique: company / document / heading / qualifier
    company: str
    title: str
    heading: str
    text: str
    facts: tuple[Fact, ...]
    twin_group: str  # passages with the same twin_group are near-miss twins
    family: str


# --- figures: each returns the text as the document writes it -------------------------


def _money(low: int, high: int, step: int = 1) -> Callable[[random.Random], str]:
    def make(rng: random.Random) -> str:
        value = rng.randrange(low, high, step)
        amount = f"{value:,}"
        form = rng.choice(["€{a}", "{a} EUR", "£{a}", "${a}", "EUR {a}"])
        return form.format(a=amount)

    return make


def _number(low: int, high: int, unit: str = "") -> Callable[[random.Random], str]:
    def make(rng: random.Random) -> str:
        value = rng.randrange(low, high)
        return f"{value} {unit}".strip() if unit else str(value)

    return make


def _decimal(low: float, high: float, unit: str) -> Callable[[random.Random], str]:
    def make(rng: random.Random) -> str:
        return f"{rng.uniform(low, high):.1f} {unit}"

    return make


def _code(prefix: str, digits: int = 4) -> Callable[[random.Random], str]:
    def make(rng: random.Random) -> str:
        return f"{prefix}-{rng.randrange(10 ** (digits - 1), 10**digits)}"

    return make


def _time(rng: random.Random) -> str:
    hour = rng.choice([6, 7, 8, 9, 10, 14, 15, 16, 17, 18, 19, 20, 22])
    return f"{hour}:{rng.choice(['00', '15', '30', '45'])}"


def _date(rng: random.Random) -> str:
    months = "January February March April May June July August September October November December"
    return f"{rng.randrange(1, 29)} {rng.choice(months.split())} {rng.choice([2025, 2026, 2027])}"


def _percent(low: int, high: int) -> Callable[[random.Random], str]:
    return lambda rng: f"{rng.randrange(low, high)}%"


# --- topics written as sentences: (sentence, questions, answer) with {q} the qualifier --


@dataclass(frozen=True)
class _Line:
    sentence: str  # "{q}" qualifier, "{v}" figure
    questions: tuple[str, ...]
    answer: str
    value: Callable[[random.Random], str]


@dataclass(frozen=True)
class _ProseTopic:
    family: str
    document: str
    heading: str  # may hold {q}
    qualifiers: tuple[str, ...]
    lines: tuple[_Line, ...]


@dataclass(frozen=True)
class _Column:
    name: str
    questions: tuple[str, ...]  # {row} the row's label, lower-cased where it reads better
    answer: str
    value: Callable[[random.Random], str]


@dataclass(frozen=True)
class _TableTopic:
    family: str
    document: str
    heading: str  # may hold {q}
    row_header: str
    rows: tuple[str, ...]
    columns: tuple[_Column, ...]
    qualifiers: tuple[str, ...] = ("",)
    intro: str = ""


PROSE: tuple[_ProseTopic, ...] = (
    _ProseTopic(
        "leave",
        "Employee handbook",
        "Leave for {q} staff",
        ("full-time", "part-time"),
        (
            _Line(
                "{Q} staff receive {v} of paid annual leave per calendar year.",
                (
                    "How many vacation days do {q} people get each year?",
                    "What's the holiday allowance if I work {q}?",
                    "How much paid time off per year for {q} employees?",
                ),
                "{Q} staff get {v} of paid annual leave a year.",
                _number(12, 31, "days"),
            ),
            _Line(
                "Up to {v} of unused leave may be carried over by {q} staff into the next year.",
                (
                    "Can {q} staff roll unused holiday over, and how much?",
                    "How many leave days can a {q} employee carry into next year?",
                ),
                "{Q} staff may carry over up to {v} of unused leave.",
                _number(2, 10, "days"),
            ),
            _Line(
                "Sick leave beyond {v} in a row needs a doctor's note for {q} staff.",
                (
                    "When do I need a doctor's note if I'm off sick as a {q} worker?",
                    "After how long off sick must a {q} employee bring a medical certificate?",
                ),
                "A doctor's note is needed after {v} of sick leave in a row.",
                _number(2, 6, "consecutive days"),
            ),
        ),
    ),
    _ProseTopic(
        "site-hours",
        "Site operating guide",
        "{q} site",
        ("Leeds", "Derby", "Rotterdam", "Lyon"),
        (
            _Line(
                "The {q} site opens at {v} on weekdays.",
                (
                    "What time does {q} open in the morning?",
                    "When can I get into the {q} building on a weekday?",
                    "How early is the {q} site open?",
                ),
                "The {q} site opens at {v} on weekdays.",
                _time,
            ),
            _Line(
                "Deliveries to {q} are accepted until {v}.",
                (
                    "What's the cut-off for deliveries at {q}?",
                    "Until when can a supplier drop goods off at {q}?",
                ),
                "Deliveries to {q} are accepted until {v}.",
                _time,
            ),
            _Line(
                "The {q} security desk is on extension {v}.",
                (
                    "Which number do I ring for security in {q}?",
                    "How do I reach the security desk at {q}?",
                    "What's the phone extension of {q} security?",
                ),
                "The {q} security desk is on extension {v}.",
                _number(2000, 9999),
            ),
            _Line(
                "Visitor parking at {q} is limited to {v} spaces.",
                (
                    "How many visitor spaces are there in the {q} car park?",
                    "Is there much room for guests to park at {q}?",
                ),
                "Visitor parking at {q} has {v} spaces.",
                _number(6, 60, "spaces"),
            ),
        ),
    ),
    _ProseTopic(
        "contract",
        "Supplier contract summary",
        "{q} agreement",
        ("cleaning services", "fleet leasing", "catering", "IT support", "waste collection"),
        (
            _Line(
                "The {q} agreement runs under contract number {v}.",
                (
                    "What's the contract reference for {q}?",
                    "Which contract number covers our {q} deal?",
                ),
                "The {q} agreement is contract {v}.",
                _code("CT", 5),
            ),
            _Line(
                "Either party may end the {q} agreement with {v} of written notice.",
                (
                    "How much notice do we need to give to cancel {q}?",
                    "If we want out of the {q} contract, how long is the notice period?",
                    "What's the termination notice on the {q} agreement?",
                ),
                "The {q} agreement can be ended with {v} of written notice.",
                _number(30, 181, "days"),
            ),
            _Line(
                "The annual value of the {q} agreement is {v}.",
                (
                    "How much do we pay per year for {q}?",
                    "What is the {q} contract worth annually?",
                ),
                "The {q} agreement is worth {v} a year.",
                _money(20_000, 900_000, 500),
            ),
            _Line(
                "The {q} agreement expires on {v}.",
                ("When does the {q} contract end?", "What's the expiry date of the {q} deal?"),
                "The {q} agreement expires on {v}.",
                _date,
            ),
        ),
    ),
    _ProseTopic(
        "procedure",
        "Operating procedures",
        "{q} procedure",
        ("Type A cold store", "Type B cold store", "blast chiller", "dry store"),
        (
            _Line(
                "The {q} must be kept at or below {v}.",
                (
                    "How cold does the {q} have to be?",
                    "What's the maximum temperature allowed in the {q}?",
                ),
                "The {q} must stay at or below {v}.",
                lambda rng: f"{rng.randrange(-25, 9)} °C",
            ),
            _Line(
                "Temperatures in the {q} are logged every {v}.",
                (
                    "How often do we record the {q} temperature?",
                    "What's the logging interval for the {q}?",
                ),
                "The {q} temperature is logged every {v}.",
                _number(2, 13, "hours"),
            ),
            _Line(
                "A {q} alarm must be answered within {v}.",
                (
                    "How fast do we have to respond when the {q} alarm goes off?",
                    "What's the response time for a {q} alarm?",
                ),
                "A {q} alarm must be answered within {v}.",
                _number(5, 46, "minutes"),
            ),
            _Line(
                "Faults on the {q} are reported on form {v}.",
                (
                    "Which form do I fill in when the {q} breaks down?",
                    "What's the form for reporting a {q} fault?",
                ),
                "Faults on the {q} are reported on form {v}.",
                _code("MF", 3),
            ),
        ),
    ),
    _ProseTopic(
        "it",
        "IT handbook",
        "{q}",
        ("Laptops", "Mobile phones", "Monitors"),
        (
            _Line(
                "{Q} are replaced every {v}.",
                (
                    "How often do we get new {q}?",
                    "What's the refresh cycle for {q}?",
                    "When am I due a replacement for my {q_singular}?",
                ),
                "{Q} are replaced every {v}.",
                _number(2, 7, "years"),
            ),
            _Line(
                "Requests for {q} go through ticket category {v}.",
                (
                    "Which ticket category do I pick to order {q}?",
                    "How do I request {q} in the service desk tool?",
                ),
                "Requests for {q} use ticket category {v}.",
                _code("HW", 2),
            ),
            _Line(
                "A lost or stolen item among {q} must be reported within {v}.",
                (
                    "I lost one of my {q}: how quickly must I tell IT?",
                    "What's the deadline to report stolen {q}?",
                ),
                "Lost or stolen {q} must be reported within {v}.",
                _number(2, 49, "hours"),
            ),
        ),
    ),
    _ProseTopic(
        "budget",
        "Budget memo",
        "{q} budget",
        ("FY2026", "FY2027"),
        (
            _Line(
                "The {q} marketing budget is {v}.",
                (
                    "How much money is set aside for marketing in {q}?",
                    "What are we spending on marketing in {q}?",
                ),
                "The {q} marketing budget is {v}.",
                lambda rng: f"€{rng.randrange(11, 99) / 10:.1f} million",
            ),
            _Line(
                "Capital expenditure for {q} is capped at {v}.",
                (
                    "What's the capex limit for {q}?",
                    "How much can we invest in equipment in {q}?",
                ),
                "Capital expenditure for {q} is capped at {v}.",
                lambda rng: f"€{rng.randrange(21, 199) / 10:.1f} million",
            ),
            _Line(
                "Headcount is planned to grow by {v} in {q}.",
                (
                    "By how much will we grow the team in {q}?",
                    "What's the planned headcount increase for {q}?",
                ),
                "Headcount is planned to grow by {v} in {q}.",
                _percent(2, 19),
            ),
        ),
    ),
    _ProseTopic(
        "people",
        "Staff directory",
        "{q} team",
        ("Payroll", "Facilities", "Health and safety", "Procurement"),
        (
            _Line(
                "The {q} team is led by {v}.",
                (
                    "Who runs {q}?",
                    "Who's the head of the {q} team?",
                    "Who do I escalate {q} issues to?",
                ),
                "The {q} team is led by {v}.",
                lambda rng: rng.choice(
                    [
                        "Priya Nandakumar",
                        "Tomás Eriksen",
                        "Ines Vidal",
                        "Kwame Boateng",
                        "Sofia Lindahl",
                        "Marek Novak",
                        "Aiko Tanaka",
                        "Ruth Okonjo",
                    ]
                ),
            ),
            _Line(
                "{Q} can be reached on extension {v}.",
                ("What's the phone number for {q}?", "How do I call the {q} people?"),
                "{Q} can be reached on extension {v}.",
                _number(1000, 9999),
            ),
            _Line(
                "{Q} requests are answered within {v}.",
                (
                    "How long does {q} take to get back to me?",
                    "What's the turnaround time on a {q} request?",
                ),
                "{Q} requests are answered within {v}.",
                _number(1, 6, "working days"),
            ),
        ),
    ),
)


TABLES: tuple[_TableTopic, ...] = (
    _TableTopic(
        "allowances",
        "Travel policy",
        "Daily travel allowances",
        "Destination",
        ("Domestic", "Europe", "North America", "Rest of world"),
        (
            _Column(
                "Meals per day",
                (
                    "How much can I spend on food per day on a trip to {row}?",
                    "What's the daily meal allowance for {row} travel?",
                    "Going to {row}: what do I get for meals each day?",
                ),
                "The daily meal allowance for {row} is {v}.",
                _money(18, 95),
            ),
            _Column(
                "Hotel per night",
                (
                    "What's the nightly hotel limit for {row}?",
                    "How much can a hotel cost per night when I travel to {row}?",
                    "Max I can pay for a room in {row}?",
                ),
                "The hotel limit for {row} is {v} per night.",
                _money(80, 320, 5),
            ),
        ),
        intro="Allowances are paid per calendar day away from home.",
    ),
    _TableTopic(
        "pay-grades",
        "Pay scales",
        "Salary ranges {q}",
        "Grade",
        ("G1", "G2", "G3", "G4", "G5"),
        (
            _Column(
                "Minimum",
                (
                    "What's the lowest salary in grade {row}?",
                    "Where does pay start for {row}?",
                    "What is the entry salary of a {row} role?",
                ),
                "Grade {row} starts at {v}.",
                _money(24_000, 90_000, 500),
            ),
            _Column(
                "Maximum",
                (
                    "What's the top of the pay range for {row}?",
                    "How much can someone in grade {row} earn at most?",
                ),
                "Grade {row} goes up to {v}.",
                _money(30_000, 120_000, 500),
            ),
        ),
        qualifiers=("2026", "2027"),
    ),
    _TableTopic(
        "tyres",
        "Vehicle maintenance manual",
        "Tyre pressures, {q}",
        "Axle",
        ("Front axle", "Rear axle", "Trailer axle", "Spare wheel"),
        (
            _Column(
                "Pressure (cold)",
                (
                    "What pressure should the {row_l} tyres be at?",
                    "How much air goes in the {row_l} tyres?",
                    "What's the correct tyre pressure for the {row_l}?",
                ),
                "The {row_l} tyres take {v} cold.",
                lambda rng: f"{rng.randrange(30, 130)} psi",
            ),
            _Column(
                "Tread limit",
                (
                    "When do {row_l} tyres have to be replaced?",
                    "What's the minimum tread depth on the {row_l}?",
                ),
                "The {row_l} tyres must have at least {v} of tread.",
                _decimal(1.6, 4.0, "mm"),
            ),
        ),
        qualifiers=("Van V-200", "Truck T-450"),
    ),
    _TableTopic(
        "room-rates",
        "Rate card",
        "Room rates {q}",
        "Room type",
        ("Standard double", "Superior double", "Junior suite", "Family room"),
        (
            _Column(
                "Low season",
                (
                    "How much is a {row_l} in low season?",
                    "What does a {row_l} cost off-peak?",
                ),
                "A {row_l} costs {v} in low season.",
                _money(60, 260, 5),
            ),
            _Column(
                "High season",
                (
                    "What's the peak-season price of a {row_l}?",
                    "How much for a {row_l} in high season?",
                ),
                "A {row_l} costs {v} in high season.",
                _money(90, 420, 5),
            ),
        ),
        qualifiers=("city hotels", "resort hotels"),
    ),
    _TableTopic(
        "service-levels",
        "Service level agreement",
        "Response times, {q} plan",
        "Priority",
        ("P1 critical", "P2 high", "P3 normal", "P4 low"),
        (
            _Column(
                "First response",
                (
                    "How fast do we have to respond to a {row} ticket?",
                    "What's the first-response target for {row}?",
                ),
                "A {row} ticket gets a first response within {v}.",
                lambda rng: rng.choice(
                    [
                        "15 minutes",
                        "30 minutes",
                        "1 hour",
                        "2 hours",
                        "4 hours",
                        "8 hours",
                        "1 business day",
                    ]
                ),
            ),
            _Column(
                "Resolution",
                (
                    "How long until a {row} issue has to be fixed?",
                    "What's the resolution target for {row} tickets?",
                ),
                "A {row} ticket must be resolved within {v}.",
                lambda rng: rng.choice(
                    ["4 hours", "8 hours", "24 hours", "3 days", "5 days", "10 days"]
                ),
            ),
        ),
        qualifiers=("Standard", "Premium"),
    ),
    _TableTopic(
        "shift-allowance",
        "Shift pay",
        "Shift allowances {q}",
        "Shift",
        ("Early shift", "Late shift", "Night shift", "Weekend shift"),
        (
            _Column(
                "Allowance per hour",
                (
                    "What extra do I get per hour on the {row_l}?",
                    "How much is the hourly supplement for a {row_l}?",
                ),
                "The {row_l} allowance is {v} per hour.",
                lambda rng: f"€{rng.randrange(1, 9)}.{rng.randrange(0, 100):02d}",
            ),
            _Column(
                "Hours",
                ("What are the times of the {row_l}?", "When does the {row_l} run?"),
                "The {row_l} runs {v}.",
                lambda rng: f"{_time(rng)}-{_time(rng)}",
            ),
        ),
        qualifiers=("warehouse staff", "drivers"),
    ),
    _TableTopic(
        "dosing",
        "Production specification",
        "Recipe limits, {q}",
        "Ingredient",
        ("Salt", "Sugar", "Yeast", "Preservative E202"),
        (
            _Column(
                "Max per kg",
                (
                    "How much {row_l} is allowed per kilo of dough?",
                    "What's the upper limit for {row_l} per kg?",
                ),
                "At most {v} of {row_l} per kg.",
                lambda rng: f"{rng.randrange(1, 60)} g",
            ),
            _Column(
                "Supplier code",
                (
                    "Who supplies our {row_l}: which code?",
                    "What's the supplier code for {row_l}?",
                ),
                "The supplier code for {row_l} is {v}.",
                _code("SUP", 4),
            ),
        ),
        qualifiers=("white loaf", "rye loaf"),
    ),
)


def _fill(template: str, *, q: str = "", v: str = "", row: str = "") -> str:
    singular = q[:-1] if q.endswith("s") else q
    return template.format(
        q=q,
        Q=q[:1].upper() + q[1:],
        q_singular=singular.lower(),
        v=v,
        row=row,
        row_l=row[:1].lower() + row[1:] if row[1:2].islower() else row,
    )


def _sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:]


def _prose_passages(topic: _ProseTopic, company: str, rng: random.Random) -> Iterator[Passage]:
    qualifiers = rng.sample(topic.qualifiers, k=min(len(topic.qualifiers), rng.choice([2, 2, 3])))
    for qualifier in qualifiers:
        lines = [line for line in topic.lines if rng.random() < 0.85] or list(topic.lines)
        sentences, facts = [], []
        for line in lines:
            value = line.value(rng)
            sentences.append(_fill(line.sentence, q=qualifier, v=value))
            facts.extend(
                Fact(
                    question=_sentence_case(_fill(question, q=qualifier)),
                    answer=_fill(line.answer, q=qualifier, v=value),
                    figure=value,
                    family=f"{topic.family}:{line.sentence[:24]}",
                )
                for question in line.questions
            )
        if rng.random() < 0.5:
            sentences.insert(0, f"This section applies to every {company} location.")
        heading = _fill(topic.heading, q=qualifier)
        yield Passage(
            key=f"{company}/{topic.document}/{heading}",
            company=company,
            title=f"{company} {topic.document.lower()}",
            heading=_sentence_case(heading),
            text=f"{_sentence_case(heading)}\n" + " ".join(sentences),
            facts=tuple(facts),
            twin_group=f"{company}/{topic.family}",
            family=topic.family,
        )


def _table_passages(topic: _TableTopic, company: str, rng: random.Random) -> Iterator[Passage]:
    qualifiers = rng.sample(topic.qualifiers, k=min(len(topic.qualifiers), 2))
    for qualifier in qualifiers:
        rows = [row for row in topic.rows if rng.random() < 0.9] or list(topic.rows)
        lines = [" | ".join([topic.row_header, *(c.name for c in topic.columns)])]
        facts = []
        for row in rows:
            values = [column.value(rng) for column in topic.columns]
            lines.append(" | ".join([row, *values]))
            for column, value in zip(topic.columns, values, strict=True):
                facts.extend(
                    Fact(
                        question=_sentence_case(_fill(question, row=row, q=qualifier)),
                        answer=_sentence_case(_fill(column.answer, row=row, v=value)),
                        figure=value,
                        family=f"{topic.family}:{column.name}",
                    )
                    for question in column.questions
                )
        heading = _fill(topic.heading, q=qualifier).strip(" ,")
        intro = f"{topic.intro}\n" if topic.intro and rng.random() < 0.6 else ""
        yield Passage(
            key=f"{company}/{topic.document}/{heading}",
            company=company,
            title=f"{company} {topic.document.lower()}",
            heading=heading,
            text=f"{heading}\n{intro}" + "\n".join(lines),
            facts=tuple(facts),
            twin_group=f"{company}/{topic.family}",
            family=topic.family,
        )


def synthetic_passages(*, seed: int, companies: tuple[str, ...] = COMPANIES) -> list[Passage]:
    """Every company's passages: each topic for two or three qualifiers (the twins)."""
    rng = random.Random(seed)
    passages: list[Passage] = []
    for company in companies:
        for prose in PROSE:
            passages.extend(_prose_passages(prose, company, rng))
        for table in TABLES:
            passages.extend(_table_passages(table, company, rng))
    for passage in passages:
        for fact in passage.facts:
            if fact.figure not in passage.text:
                raise AssertionError(f"{passage.key}: {fact.figure!r} is not in its passage")
    return passages


def families() -> list[str]:
    return [t.family for t in PROSE] + [t.family for t in TABLES]
