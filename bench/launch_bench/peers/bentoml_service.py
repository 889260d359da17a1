"""BentoML peer: one service, one worker, the bench models as APIs (async def unless the model blocks).
Access logging is off, as for every other target."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import bentoml

from launch_bench import models


@bentoml.service(workers=1, traffic={"timeout": 60}, logging={"access": {"enabled": False}})
class Bench:
    @bentoml.api
    async def echo(self, x: Any) -> Any:
        return models.echo(x)

    @bentoml.api
    def sleep(self, x: Any) -> Any:  # blocking: BentoML runs sync APIs in its thread pool
        return models.sleep_1ms(x)

    @bentoml.api
    async def matmul(self, x: Any) -> float:
        return models.matmul(x)

    @bentoml.api
    async def tokens(self, x: Any) -> AsyncGenerator[str, None]:
        for item in models.tokens(x):
            yield item

    @bentoml.task
    def noop(self, x: Any) -> Any:
        return models.async_noop(x)
