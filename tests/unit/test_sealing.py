"""Callback credentials sealed at rest (``server.sealing``)."""

from __future__ import annotations

import pytest

from launch.server.sealing import Sealer, SealError, is_sealed

SECRET = bytes(range(32))
BASIC = {"kind": "basic", "username": "hook", "password": "s3cret"}


def test_a_sealed_callback_hides_its_auth_and_opens_again() -> None:
    sealer = Sealer(SECRET)
    callback = {"url": "https://example.com/hook", "auth": BASIC}
    sealed = sealer.seal_callback(callback)
    assert sealed is not None and sealed["url"] == callback["url"] and is_sealed(sealed["auth"]["password"])
    assert sealed["auth"]["username"] == "hook" and "s3cret" not in str(sealed)
    assert sealer.callback_auth(sealed) == BASIC
    assert sealer.seal_callback(sealed) == sealed  # sealed once
    assert sealer.seal_callback(callback) != sealed  # a fresh nonce each time


def test_plain_and_absent_auth_pass_through() -> None:
    sealer = Sealer(SECRET)
    assert sealer.seal_callback(None) is None
    assert sealer.seal_callback({"url": "u", "auth": None}) == {"url": "u", "auth": None}
    assert sealer.callback_auth({"url": "u", "auth": BASIC}) == BASIC  # stored before sealing existed
    assert sealer.callback_auth({"url": "u"}) is None


def test_another_secret_or_an_altered_token_does_not_open() -> None:
    sealed = Sealer(SECRET).seal(BASIC)
    with pytest.raises(SealError):
        Sealer(bytes(32)).open(sealed)
    token = sealed["sealed"]
    altered = {"sealed": token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]}
    with pytest.raises(SealError):
        Sealer(SECRET).open(altered)


def test_an_endpoints_default_callback_auth_is_sealed_and_opened() -> None:
    sealer = Sealer(SECRET)
    mtls = {"kind": "mtls", "cert": "-----BEGIN CERTIFICATE-----", "key": "-----BEGIN PRIVATE KEY-----"}
    extra = {"team": "t", "default_callback_auth": mtls}
    stored = sealer.seal_endpoint_extra(extra)
    assert stored["team"] == "t" and stored["default_callback_auth"]["cert"] == mtls["cert"]
    assert is_sealed(stored["default_callback_auth"]["key"]) and "PRIVATE KEY" not in str(stored)
    assert sealer.seal_endpoint_extra(stored) == stored  # an edit re-seals nothing already sealed
    assert sealer.open_endpoint_extra(stored) == extra
    assert sealer.seal_endpoint_extra({"team": "t"}) == {"team": "t"}
    assert sealer.seal_endpoint_extra({"default_callback_auth": "junk"}) == {"default_callback_auth": "junk"}
