"""Reading a ``/metrics`` answer: samples by name and labels, parsed by prometheus_client."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Scrape:
    samples: tuple[tuple[str, dict[str, str], float], ...]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        return cls(
            tuple(
                (sample.name, dict(sample.labels), sample.value)
                for family in text_string_to_metric_families(text)
                for sample in family.samples
            )
        )

    def value(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples whose labels include ``labels`` (0 if none)."""
        return sum(
            value
            for sample, have, value in self.samples
            if sample == name and all(have.get(k) == v for k, v in labels.items())
        )

    def labels(self, name: str, label: str) -> set[str]:
        return {have[label] for sample, have, _ in self.samples if sample == name and label in have}

    def counts(self, name: str, *labels: str) -> dict[tuple[str, ...], float]:
        """``name``'s nonzero samples, by the values of ``labels``."""
        found: dict[tuple[str, ...], float] = {}
        for sample, have, value in self.samples:
            if sample == name and value:
                key = tuple(have.get(label, "") for label in labels)
                found[key] = found.get(key, 0) + value
        return found
