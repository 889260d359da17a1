"""A cheap latency histogram shared by the gateway and the workers (no dependencies, no locks).

prometheus-client's metrics take a lock on every observation; the request path instead bumps plain ints
here on the event loop's thread, and the gateway's collector turns them into Prometheus histograms only when
``/metrics`` is scraped. Workers keep one for their compute time and send it on request (``wire.STATS``).
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

# seconds: sub-millisecond gateway overheads up to long predictions
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)


class Histogram:
    """Counts per bucket (the last one is +Inf) and the sum of observed values."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def add(self, other: Histogram) -> None:
        """Fold ``other`` (same buckets) into this one."""
        for i, n in enumerate(other.counts):
            self.counts[i] += n
        self.sum += other.sum

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus buckets: (upper bound as text, observations at or under it), ending with +Inf."""
        out, total = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return out

    def quantile(self, q: float) -> float | None:
        """An estimate of the ``q`` quantile (linear within a bucket), None without observations."""
        total = self.count
        if total == 0:
            return None
        rank, seen, lower = q * total, 0, 0.0
        for i, n in enumerate(self.counts):
            if n and seen + n >= rank:
                upper = self.bounds[i] if i < len(self.bounds) else self.bounds[-1]
                return lower + (upper - lower) * max(0.0, rank - seen) / n
            seen += n
            lower = self.bounds[i] if i < len(self.bounds) else lower
        return self.bounds[-1]

    def to_dict(self) -> dict[str, Any]:
        return {"bounds": list(self.bounds), "counts": list(self.counts), "sum": self.sum}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Histogram:
        hist = cls(tuple(float(b) for b in data["bounds"]))
        counts = [int(n) for n in data["counts"]]
        if len(counts) != len(hist.counts):
            raise ValueError("histogram counts do not match its bounds")
        hist.counts, hist.sum = counts, float(data["sum"])
        return hist
