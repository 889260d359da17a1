"""Where prediction results live: pickled results are opaque objects behind signed download URLs.

An async task's result lives as long as its task (retention). A sync prediction's pickled result has no row:
it is reachable only through its signed URL, so it goes once every URL to it has expired. Its key starts with
the hour it was made (``sync-results/<YYYYMMDDHH>/...``, a record of the object store: the local store appends it to a
segment file), so the sweep deletes whole hours by listing them, without a database write on the sync path.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterable

from launch.server import signing

RESULT_PURPOSE = "result"
SYNC_RESULTS = "sync-results"
_HOUR = "%Y%m%d%H"


def result_key(owner: str, task_id: str) -> str:
    return f"results/{owner}/{task_id}.pkl"


def sync_results_prefix(now: float) -> str:
    """Where a sync prediction's pickled result made at ``now`` is stored (a record: ``put_record``)."""
    return f"{SYNC_RESULTS}/{time.strftime(_HOUR, time.gmtime(now))}/"


def expired_hours(names: Iterable[str], cutoff: float) -> list[str]:
    """The hours (``sync-results/`` children) whose every result was made before ``cutoff``; names that are
    not hours are left alone."""
    expired = []
    for name in names:
        try:
            start = calendar.timegm(time.strptime(name, _HOUR))
        except ValueError:
            continue
        if len(name) == 10 and start + 3600 <= cutoff:
            expired.append(name)
    return sorted(expired)


def result_url(public_url: str, secret: bytes, key: str, ttl: int) -> str:
    return f"{public_url}/v1/results/{signing.sign(secret, RESULT_PURPOSE, key, ttl)}"
