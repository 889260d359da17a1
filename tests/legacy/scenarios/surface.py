"""The public surface of the installed client: LaunchClient's methods and launch.model_endpoint's classes
with their methods, so the tests notice a method that no scenario drives."""

from __future__ import annotations

import inspect
from typing import Any

from _common import emit

import launch.model_endpoint as model_endpoint
from launch import LaunchClient


def public_methods(cls: type) -> list[str]:
    return sorted(n for n, v in vars(cls).items() if not n.startswith("_") and callable(v))


def main() -> dict[str, Any]:
    classes = {n: v for n, v in vars(model_endpoint).items()
               if inspect.isclass(v) and v.__module__ == model_endpoint.__name__}
    return {"LaunchClient": public_methods(LaunchClient),
            "model_endpoint": {n: public_methods(c) for n, c in sorted(classes.items())},
            "model_endpoint_callables": sorted(n for n, v in vars(model_endpoint).items()
                                               if callable(v) and not n.startswith("_")
                                               and getattr(v, "__module__", "") == model_endpoint.__name__)}


if __name__ == "__main__":
    emit(main())
