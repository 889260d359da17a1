"""Streaming load: C concurrent clients request a newline-delimited stream in a loop for a fixed window.

Reports time to first item (p50/p99), items/s across all streams, per-stream items/s and errors.
Prints one `BENCH_JSON {...}` line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field

import aiohttp
import uvloop

from launch_bench.stats import median, percentile


@dataclass
class StreamTally:
    first_item_s: list[float] = field(default_factory=list)
    per_stream_items_per_s: list[float] = field(default_factory=list)
    items: int = 0
    streams: int = 0
    errors: int = 0


async def one_stream(
    session: aiohttp.ClientSession, url: str, body: bytes, expected: int, tally: StreamTally
) -> None:
    start = time.perf_counter()
    first = 0.0
    items = 0
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
        if resp.status != 200:
            tally.errors += 1
            return
        async for chunk in resp.content.iter_any():
            if not first and chunk:
                first = time.perf_counter()
            items += chunk.count(b"\n")
    end = time.perf_counter()
    tally.items += items
    tally.streams += 1
    tally.errors += items != expected
    tally.first_item_s.append(first - start)
    tally.per_stream_items_per_s.append(items / max(end - start, 1e-9))


async def client(
    session: aiohttp.ClientSession, url: str, body: bytes, expected: int, stop_at: float, tally: StreamTally
) -> None:
    while time.perf_counter() < stop_at:
        try:
            await one_stream(session, url, body, expected, tally)
        except (TimeoutError, aiohttp.ClientError):
            tally.errors += 1


async def run(url: str, body: bytes, concurrency: int, duration_s: float, expected: int) -> dict[str, float]:
    tally = StreamTally()
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout) as s:
        start = time.perf_counter()
        await asyncio.gather(
            *(client(s, url, body, expected, start + duration_s, tally) for _ in range(concurrency))
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
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", default='{"x": 1}')
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--expected-items", type=int, default=1000)
    args = parser.parse_args()
    result = uvloop.run(
        run(args.url, args.body.encode(), args.concurrency, args.duration, args.expected_items)
    )
    print("BENCH_JSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
