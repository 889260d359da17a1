"""In-memory view of endpoints for the request path: (owner, name) → Endpoint, no I/O after the first
lookup; entries are dropped whenever ``Endpoints`` reports a change."""

from __future__ import annotations

from launch.server.domain.endpoints import Endpoint, Endpoints


class EndpointCache:
    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints
        self._by_name: dict[tuple[str, str], Endpoint] = {}
        endpoints.listeners.append(self.invalidate)

    def invalidate(self, endpoint_id: str) -> None:
        if endpoint_id == "*":
            self._by_name.clear()
            return
        for key, endpoint in list(self._by_name.items()):
            if endpoint.id == endpoint_id:
                del self._by_name[key]

    async def get(self, owner: str, name: str) -> Endpoint:
        endpoint = self._by_name.get((owner, name))
        if endpoint is None:
            endpoint = await self.endpoints.get(owner, name)
            self._by_name[(owner, name)] = endpoint
        return endpoint
