"""Objects for the ``scale-launch`` CLI checks: a bundle and its clone, a sync and an async endpoint."""

from __future__ import annotations

from typing import Any

from _common import NO_REQUIREMENTS, SMALL, client, emit, name, wait_status


def predict(x: int) -> int:
    return x


def main() -> dict[str, Any]:
    c = client()
    c.create_model_bundle(name("b1"), {"framework_type": "pytorch"}, predict_fn_or_cls=predict,
                          requirements=NO_REQUIREMENTS)
    c.clone_model_bundle_with_changes(name("b1"), name("b1-clone"), app_config={"k": 2})
    statuses = [wait_status(c.create_model_endpoint(name(ep), name("b1"), endpoint_type=kind, **SMALL))
                for ep, kind in (("sync-ep", "sync"), ("async-ep", "async"))]
    return {"statuses": statuses}


if __name__ == "__main__":
    emit(main())
