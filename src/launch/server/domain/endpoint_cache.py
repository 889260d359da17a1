"""In-memory view of endpoints for the request path: (owner, name) → Endpoint, no I/O after the first
lookup; entries are dropped whenever ``Endpoints`` reports a change. Used by the prediction paths only
(it finds other owners' ``public_inference`` endpoints too)."""

from __future__ import annotations

from launch.server.domain.endpoints import Endpoint, Endpoints


class EndpointCache:
    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints
        self._by_name: dict[tuple[str, str], Endpoint] = {}
        self._keys: dict[str, set[tuple[str, str]]] = {}  # endpoint id -> its keys (by name and by id)
        endpoints.listeners.append(self.invalidate)

    def invalidate(self, endpoint_id: str) -> None:
        for key in self._keys.pop(endpoint_id, ()):
            self._by_name.pop(key, None)

    async def get(self, owner: str, name: str) -> Endpoint:
        endpoint = self._by_name.get((owner, name))
        if endpoint is None:
            endpoint = await self.endpoints.get(owner, name, for_inference=True)
            self._by_name[(owner, name)] = endpoint
            self._keys.setdefault(endpoint.id, set()).add((owner, name))
        return endpoint
