"""Redis broker (``redis://host:port/db``): the task-id queues shared by every gateway of a deployment.

Same semantics as the embedded broker: it only carries ids; the database holds each task's state and lease,
so a message lost with a dead gateway is republished by the recovery sweep and a duplicate is dropped by the
claim's compare-and-set. Per queue, owners (``group``) take turns and higher ``priority`` goes first within
an owner, FIFO among equals. Each operation is one Lua script (atomic across gateways):

- ``{q}:g:<group>``: sorted set of ids, score ``-priority * 2^40 + sequence`` (ZPOPMIN = next);
- ``{q}:turns``: list of groups with messages, head is next (rotated after each pop);
- ``{q}:size``: number of queued ids; ``{q}:seq``: the FIFO sequence;
- ``{q}:wake``: a short list consumers block on (BLPOP) while the queue is empty.

Publishing an id already queued in the same group does not queue it twice. ``?namespace=NAME`` in the URL
prefixes every key (default ``launch``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis

_PRIORITY_SCALE = 2**40
_WAKE_KEEP = 64

_PUBLISH = """
local q = KEYS[1]
local group, message, priority = ARGV[1], ARGV[2], tonumber(ARGV[3])
local seq = redis.call('INCR', q .. ':seq')
local key = q .. ':g:' .. group
if redis.call('ZSCORE', key, message) then return 0 end
if redis.call('ZCARD', key) == 0 then redis.call('RPUSH', q .. ':turns', group) end
redis.call('ZADD', key, -priority * tonumber(ARGV[4]) + seq, message)
redis.call('INCR', q .. ':size')
redis.call('RPUSH', q .. ':wake', '1')
redis.call('LTRIM', q .. ':wake', -tonumber(ARGV[5]), -1)
return 1
"""

_POP = """
local q = KEYS[1]
while true do
  local group = redis.call('LPOP', q .. ':turns')
  if not group then return false end
  local key = q .. ':g:' .. group
  local popped = redis.call('ZPOPMIN', key)
  if popped[1] then
    if redis.call('ZCARD', key) > 0 then redis.call('RPUSH', q .. ':turns', group) end
    redis.call('DECR', q .. ':size')
    return popped[1]
  end
end
"""

_POSITION = """
local q = KEYS[1]
local group, message = ARGV[1], ARGV[2]
local own = redis.call('ZRANK', q .. ':g:' .. group, message)
if not own then return -1 end
local ahead, before = own, true
for _, other in ipairs(redis.call('LRANGE', q .. ':turns', 0, -1)) do
  if other == group then before = false
  else
    local size = redis.call('ZCARD', q .. ':g:' .. other)
    local turns = own
    if before then turns = own + 1 end
    ahead = ahead + math.min(size, turns)
  end
end
return ahead
"""

_DROP = """
local q = KEYS[1]
for _, group in ipairs(redis.call('LRANGE', q .. ':turns', 0, -1)) do redis.call('DEL', q .. ':g:' .. group) end
redis.call('DEL', q .. ':turns', q .. ':size', q .. ':seq')
redis.call('RPUSH', q .. ':wake', '1')
redis.call('EXPIRE', q .. ':wake', 60)
return 1
"""


def split_url(url: str) -> tuple[str, str]:
    """(connection URL, namespace) of ``redis://host:port/db?namespace=NAME`` (default ``launch``): several
    deployments can share one Redis under different namespaces."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "namespace"]
    namespace = dict(parse_qsl(parts.query)).get("namespace", "launch")
    return urlunsplit(parts._replace(query=urlencode(query))), namespace


class RedisBroker:
    def __init__(self, url: str) -> None:
        connection_url, namespace = split_url(url)
        self.url = url
        self.prefix = f"{namespace}:queue:"
        self.redis: aioredis.Redis = aioredis.Redis.from_url(connection_url, decode_responses=True)
        self._publish = self.redis.register_script(_PUBLISH)
        self._pop = self.redis.register_script(_POP)
        self._position = self.redis.register_script(_POSITION)
        self._drop = self.redis.register_script(_DROP)
        self._where: dict[str, str] = {}  # message -> group, for ``position`` of what this gateway published

    def _key(self, queue: str) -> str:
        return "{" + self.prefix + queue + "}"  # one hash slot per queue (Redis Cluster)

    async def publish(self, queue: str, message: str, priority: int = 0, group: str = "") -> None:
        await self._publish(keys=[self._key(queue)], args=[group, message, priority, _PRIORITY_SCALE, _WAKE_KEEP])
        if len(self._where) > 100_000:
            self._where.clear()
        self._where[message] = group

    async def consume(self, queue: str, timeout: float) -> str | None:
        key = self._key(queue)
        deadline = time.monotonic() + timeout
        while True:
            message = await self._pop(keys=[key])
            if message is not None:
                self._where.pop(message, None)
                return str(message)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            # BLPOP takes whole or fractional seconds; a wake token left by an earlier publish costs one retry
            await self.redis.blpop([key + ":wake"], timeout=max(0.01, min(remaining, 5.0)))

    async def depth(self, queue: str) -> int:
        value = await self.redis.get(self._key(queue) + ":size")
        return max(0, int(value or 0))

    async def position(self, queue: str, message: str) -> int | None:
        group = self._where.get(message, "")
        ahead = await self._position(keys=[self._key(queue)], args=[group, message])
        return None if int(ahead) < 0 else int(ahead)

    async def drop(self, queue: str) -> None:
        await self._drop(keys=[self._key(queue)])

    async def ping(self) -> Any:
        return await self.redis.ping()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.redis.aclose(), 5)
