"""TOP request signing, byte for byte."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from urllib.parse import parse_qsl

import httpx
import pytest

from partnersync.auth.top import TopSignAuth, top_sign, top_timestamp

DOCUMENTED = {
    "app_key": "test",
    "fields": "nick",
    "format": "xml",
    "method": "taobao.user.seller.get",
    "session": "test",
    "sign_method": "md5",
    "timestamp": "2013-05-06 13:52:03",
    "v": "2.0",
}


def test_md5_matches_the_documented_vector() -> None:
    assert top_sign(DOCUMENTED, "test", "md5") == "72CB4D809B375A54502C09360D879C64"


@pytest.mark.parametrize(
    ("method", "digest"), [("hmac", hashlib.md5), ("hmac-sha256", hashlib.sha256)]
)
def test_hmac_methods_sign_the_concatenated_parameters(method: str, digest: object) -> None:
    text = "".join(f"{k}{v}" for k, v in sorted(DOCUMENTED.items()))
    expected = hmac.new(b"test", text.encode(), digest).hexdigest().upper()  # type: ignore[arg-type]
    assert top_sign(DOCUMENTED, "test", method) == expected
    assert top_sign({**DOCUMENTED, "sign": "ignored"}, "test", method) == expected


def test_timestamps_are_written_in_gmt_plus_8() -> None:
    assert top_timestamp(datetime(2013, 5, 6, 5, 52, 3, tzinfo=UTC)) == "2013-05-06 13:52:03"


def test_the_auth_flow_signs_a_form_post_with_the_public_parameters() -> None:
    auth = TopSignAuth(
        "test",
        "test",
        "test",
        sign_method="md5",
        now=lambda: datetime(2013, 5, 6, 5, 52, 3, tzinfo=UTC),
    )
    request = httpx.Request(
        "POST",
        "http://127.0.0.1/router/rest",
        data={"method": "taobao.user.seller.get", "fields": "nick"},
    )
    signed = next(auth.auth_flow(request))
    params = dict(parse_qsl(signed.content.decode()))
    assert params.pop("sign") == top_sign({**params, "format": params["format"]}, "test", "md5")
    assert params["timestamp"] == "2013-05-06 13:52:03"
    assert params["session"] == "test"
    assert "test" not in repr(auth).replace("app_key='test'", "")
