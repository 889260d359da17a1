"""LitServe peer: one LitAPI per model (each with its own inference worker), one API server process.

No `from __future__ import annotations` here: LitServe reads the hooks' annotations at run time.
"""

import argparse
from collections.abc import Callable, Iterator
from typing import Any

import litserve as ls

from launch_bench import models


class ModelAPI(ls.LitAPI):
    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        super().__init__(api_path=f"/{name}")
        self.fn = fn

    def setup(self, device: str) -> None:
        pass

    def decode_request(self, request: dict[str, Any]) -> Any:
        return request["x"]

    def predict(self, x: Any) -> Any:
        return self.fn(x)

    def encode_response(self, output: Any) -> dict[str, Any]:
        return {"output": output}


class TokensAPI(ls.LitAPI):
    def __init__(self) -> None:
        super().__init__(api_path="/tokens", stream=True)

    def setup(self, device: str) -> None:
        pass

    def decode_request(self, request: dict[str, Any]) -> Any:
        return request["x"]

    def predict(self, x: Any) -> Iterator[str]:
        yield from models.tokens(x)

    def encode_response(
        self, output: Iterator[str]
    ) -> Any:  # LitServe turns this annotation into a response model
        yield from output


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    apis: list[ls.LitAPI] = [ModelAPI(name, fn) for name, fn in models.SYNC_MODELS.items()]
    server = ls.LitServer([*apis, TokensAPI()], accelerator="cpu", workers_per_device=1, timeout=60)
    server.run(host="127.0.0.1", port=parser.parse_args().port, generate_client_file=False, access_log=False)


if __name__ == "__main__":
    main()
