"""Server policy on how much one owner may ask for: workers per endpoint, workers and endpoints per owner,
unfinished async tasks per owner. Every refusal names the cap, its value and the setting that changes it.

These caps sit on top of each setting's own validation (``EndpointSettings.validate``): that one says what is
meaningful, this one what this server allows. Edits that do not raise a number are never refused, so
lowering a cap does not lock owners out of endpoints created under the old one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from launch.server.domain.errors import Conflict, InvalidRequest, TooManyRequests

if TYPE_CHECKING:
    from launch.server.domain.endpoints import EndpointSettings


@dataclass(frozen=True, slots=True)
class OwnerUsage:
    """What the caps count of an owner's other live endpoints: how many, and their ``max_workers`` summed."""

    endpoints: int = 0
    max_workers: int = 0


@dataclass(frozen=True)
class Quotas:
    max_workers_per_endpoint: int = 32
    max_workers_per_owner: int = 64
    max_endpoints_per_owner: int = 50
    max_queued_tasks_per_owner: int = 100_000

    @classmethod
    def from_settings(cls, settings: Any) -> Quotas:
        return cls(max_workers_per_endpoint=settings.max_workers_per_endpoint,
                   max_workers_per_owner=settings.max_workers_per_owner,
                   max_endpoints_per_owner=settings.max_endpoints_per_owner,
                   max_queued_tasks_per_owner=settings.max_queued_tasks_per_owner)

    def check_endpoint(self, wanted: EndpointSettings, others: OwnerUsage,
                       previous: EndpointSettings | None = None) -> None:
        """Refuse a new endpoint (``previous`` None) or an edit of one whose settings break a cap, given what
        the owner's ``others`` live endpoints use."""
        raised = previous is None or wanted.max_workers > previous.max_workers
        cap = self.max_workers_per_endpoint
        if raised and wanted.max_workers > cap:
            raise InvalidRequest(f"max_workers {wanted.max_workers} is above this server's cap of {cap} workers "
                                 "per endpoint (LAUNCH_MAX_WORKERS_PER_ENDPOINT)")
        cap = self.max_endpoints_per_owner
        if previous is None and others.endpoints >= cap:
            raise Conflict(f"you have {others.endpoints} endpoints, this server's cap of {cap} endpoints per owner "
                           "(LAUNCH_MAX_ENDPOINTS_PER_OWNER); delete one first")
        cap = self.max_workers_per_owner
        elsewhere = others.max_workers
        if raised and elsewhere + wanted.max_workers > cap:
            raise Conflict(f"max_workers {wanted.max_workers} would bring your endpoints to "
                           f"{elsewhere + wanted.max_workers} workers (max_workers summed over your endpoints), "
                           f"above this server's cap of {cap} workers per owner (LAUNCH_MAX_WORKERS_PER_OWNER)")

    def check_queued(self, unfinished: int) -> None:
        """Refuse one more async task for an owner who has ``unfinished`` ones."""
        cap = self.max_queued_tasks_per_owner
        if unfinished >= cap:
            raise TooManyRequests(f"you have {unfinished} unfinished async tasks, this server's cap of {cap} "
                                  "queued tasks per owner (LAUNCH_MAX_QUEUED_TASKS_PER_OWNER); retry when some "
                                  "have finished")


class OwnerCounts:
    """Unfinished async tasks per owner, in memory, so that a submit checks its cap without a read.

    Counted up on submit and down when a task ends; recounted from the database at start. Exact while this
    process alone ends its tasks (the embedded broker); with a shared broker each gateway counts its own.
    """

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def get(self, owner: str) -> int:
        return self._counts.get(owner, 0)

    def add(self, owner: str, n: int = 1) -> None:
        self._counts[owner] = self._counts.get(owner, 0) + n

    def remove(self, owner: str, n: int = 1) -> None:
        left = self._counts.get(owner, 0) - n
        if left > 0:
            self._counts[owner] = left
        else:
            self._counts.pop(owner, None)

    def reset(self, counts: dict[str, int]) -> None:
        self._counts = {owner: n for owner, n in counts.items() if n > 0}
