"""Signed URL tokens: valid, tampered, expired, wrong purpose, wrong secret, garbage."""

from __future__ import annotations

import base64
import time

import pytest

from launch.server import signing

SECRET = b"s" * 32
KEY = "results/alice/123.pkl"


def test_round_trip() -> None:
    token = signing.sign(SECRET, "result", KEY, 60)
    assert signing.verify(SECRET, "result", token) == KEY


def test_token_is_url_safe() -> None:
    token = signing.sign(SECRET, "upload", "uploads/a/b?c=d&e/../f", 60)
    assert all(c.isalnum() or c in "-_." for c in token)


def test_wrong_purpose_is_refused() -> None:
    token = signing.sign(SECRET, "upload", KEY, 60)
    assert signing.verify(SECRET, "result", token) is None


def test_wrong_secret_is_refused() -> None:
    token = signing.sign(SECRET, "result", KEY, 60)
    assert signing.verify(b"t" * 32, "result", token) is None


def test_expired_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    token = signing.sign(SECRET, "result", KEY, 10)
    now = time.time()
    monkeypatch.setattr(signing.time, "time", lambda: now + 11)
    assert signing.verify(SECRET, "result", token) is None


def test_negative_ttl_is_already_expired() -> None:
    assert signing.verify(SECRET, "result", signing.sign(SECRET, "result", KEY, -1)) is None


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def test_tampered_key_is_refused() -> None:
    key_part, expires, mac = signing.sign(SECRET, "result", KEY, 60).split(".")
    assert signing.verify(SECRET, "result", f"{_b64('results/bob/123.pkl')}.{expires}.{mac}") is None


def test_extended_expiry_is_refused() -> None:
    key_part, expires, mac = signing.sign(SECRET, "result", KEY, 60).split(".")
    assert signing.verify(SECRET, "result", f"{key_part}.{int(expires) + 10_000}.{mac}") is None


def test_tampered_mac_is_refused() -> None:
    key_part, expires, mac = signing.sign(SECRET, "result", KEY, 60).split(".")
    flipped = ("A" if mac[0] != "A" else "B") + mac[1:]
    assert signing.verify(SECRET, "result", f"{key_part}.{expires}.{flipped}") is None


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c.d", f"{_b64(KEY)}.notanumber.AAAA", "%%%.1.%%%",
                                   f"{_b64(KEY)}.99999999999.", "\xff.1.2"])
def test_garbage_is_refused_without_raising(token: str) -> None:
    assert signing.verify(SECRET, "result", token) is None
