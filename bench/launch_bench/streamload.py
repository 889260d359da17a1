"""Streaming load: C concurrent clients request a newline-delimited stream in a loop for a fixed window.

Reports time to first item (p50/p99), items/s across all streams, per-stream items/s and errors, and the
generator's own time to its first item (``own_first_yield_ms``: the same function called here, so the
platform's share of the first item is ``ttfi - own``). Prints one `BENCH_JSON {...}` line.

Formats: ``lines`` (one item per newline: the floors and peers) and ``launch-ndjson`` (Launch's JSON lines:
one ``{"item": ...}`` line per item, then a final ``{"status": "SUCCESS", ...}`` line that must be there).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field

import aiohttp
import uvloop

from launch_bench import models
from launch_bench.stats import median, percentile


@dataclass
class StreamTally:
    first_item_s: list[float] = field(default_factory=list)
    per_stream_items_per_s: list[float] = field(default_factory=list)
    items: int = 0
    streams: int = 0
    errors: int = 0


async def one_stream(
    session: aiohttp.ClientSession, url: str, body: bytes, expected: int, tally: StreamTally,
    headers: dict[str, str], fmt: str,
) -> None:
    start = time.perf_counter()
    first = 0.0
    items = 0
    tail = b""
    async with session.post(url, data=body, headers=headers) as resp:
        if resp.status != 200:
            tally.errors += 1
            return
        async for chunk in resp.content.iter_any():
            if not first and chunk:
                first = time.perf_counter()
            items += chunk.count(b"\n")
            tail = (tail + chunk)[-256:]
    end = time.perf_counter()
    if fmt == "launch-ndjson":
        items -= 1  # the final status line
        if b'"status":"SUCCESS"' not in tail.rsplit(b"\n", 2)[-2]:
            tally.errors += 1
    tally.items += items
    tally.streams += 1
    tally.errors += items != expected
    tally.first_item_s.append(first - start)
    tally.per_stream_items_per_s.append(items / max(end - start, 1e-9))


async def client(
    session: aiohttp.ClientSession, url: str, body: bytes, expected: int, stop_at: float, tally: StreamTally,
    headers: dict[str, str], fmt: str,
) -> None:
    while time.perf_counter() < stop_at:
        try:
            await one_stream(session, url, body, expected, tally, headers, fmt)
        except (TimeoutError, aiohttp.ClientError):
            tally.errors += 1


def own_first_yield_ms(repeat: int = 2000) -> float:
    """Median time from calling the stream's generator to its first item, in this process."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        next(models.tokens(1))
        samples.append((time.perf_counter() - start) * 1e3)
    return median(samples)


async def run(url: str, body: bytes, concurrency: int, duration_s: float, expected: int,
              authorization: str = "", fmt: str = "lines") -> dict[str, float]:
    tally = StreamTally()
    headers = {"Content-Type": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout) as s:
        start = time.perf_counter()
        await asyncio.gather(
            *(client(s, url, body, expected, start + duration_s, tally, headers, fmt) for _ in range(concurrency))
        )
        elapsed = time.perf_counter() - start
    ttfi_ms = [v * 1e3 for v in tally.first_item_s]
    return {
        "streams": tally.streams,
        "errors": tally.errors,
        "items": tally.items,
        "duration_s": elapsed,
        "items_per_s": tally.items / elapsed,
        "streams_per_s": tally.streams / elapsed,
        "ttfi_p50_ms": percentile(ttfi_ms, 50),
        "ttfi_p99_ms": percentile(ttfi_ms, 99),
        "stream_items_per_s_p50": median(tally.per_stream_items_per_s),
        "own_first_yield_ms": own_first_yield_ms(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", default='{"x": 1}')
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--expected-items", type=int, default=models.TOKENS)
    parser.add_argument("--authorization", default="")
    parser.add_argument("--format", choices=("lines", "launch-ndjson"), default="lines")
    args = parser.parse_args()
    result = uvloop.run(
        run(args.url, args.body.encode(), args.concurrency, args.duration, args.expected_items,
            args.authorization, args.format)
    )
    print("BENCH_JSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
