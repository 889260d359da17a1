"""Worker log lines: timestamped, tagged with the running request's id, whole lines only."""

from __future__ import annotations

import io
import re
import threading

from launch.worker import logs


def test_each_line_gets_a_timestamp_and_the_request_id() -> None:
    target = io.StringIO()
    stream = logs.TimestampedStream(target)
    print("outside", file=stream)  # type: ignore[call-overload]
    token = logs.request_id.set("req-1")
    try:
        stream.write("first ")
        assert target.getvalue().count("\n") == 1  # the partial line waits
        stream.write("part\nsecond\n")
    finally:
        logs.request_id.reset(token)
    lines = target.getvalue().splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    assert re.fullmatch(stamp + " outside", lines[0])
    assert re.fullmatch(stamp + r" \[req-1\] first part", lines[1])
    assert re.fullmatch(stamp + r" \[req-1\] second", lines[2])


def test_threads_do_not_mix_their_partial_lines() -> None:
    target = io.StringIO()
    stream = logs.TimestampedStream(target)

    def write(name: str) -> None:
        logs.request_id.set(name)
        for _ in range(200):
            stream.write(f"{name}-a ")
            stream.write(f"{name}-b\n")

    threads = [threading.Thread(target=write, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for line in target.getvalue().splitlines():
        rid = re.search(r"\[(t\d)\]", line)
        assert rid is not None and line.endswith(f"{rid.group(1)}-a {rid.group(1)}-b")
