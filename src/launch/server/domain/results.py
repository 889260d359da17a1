"""Where prediction results live: pickled results are opaque objects behind signed download URLs."""

from __future__ import annotations

from launch.server import signing

RESULT_PURPOSE = "result"


def result_key(owner: str, task_id: str) -> str:
    return f"results/{owner}/{task_id}.pkl"


def result_url(public_url: str, secret: bytes, key: str, ttl: int) -> str:
    return f"{public_url}/v1/results/{signing.sign(secret, RESULT_PURPOSE, key, ttl)}"
