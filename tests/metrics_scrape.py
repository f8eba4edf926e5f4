"""Reading a Prometheus text exposition in tests."""

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str, name: str) -> list:
    return [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when there is none)."""
    return sum(
        sample.value
        for sample in samples(text, name)
        if all(sample.labels.get(key) == value for key, value in labels.items())
    )
