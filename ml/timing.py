"""Wall-time accounting by phase, so runs and benchmarks can say where time goes."""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

PHASES = ("training", "evaluation", "encode_seal_store", "chain", "aggregation", "other")


@dataclass
class Timings:
    seconds: dict[str, float] = field(default_factory=lambda: {p: 0.0 for p in PHASES})

    @contextmanager
    def measure(self, phase: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - t0

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

    def copy(self) -> "Timings":
        return Timings(dict(self.seconds))

    def minus(self, other: "Timings") -> "Timings":
        return Timings({k: v - other.seconds.get(k, 0.0) for k, v in self.seconds.items()})

    @property
    def total(self) -> float:
        return sum(self.seconds.values())
