"""The legacy API used by scale-launch 0.3.3, under /v1/hosted_inference (a thin translation layer)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1/hosted_inference")
