"""X-Hub-Signature-256 on raw bytes, and the GET verification handshake.

The golden values were computed once with `openssl dgst -sha256 -hmac <secret> <file>`,
independently of the code under test, and pasted here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from whatsray.whatsapp.signature import SIGNATURE_HEADER, sign, verify_handshake, verify_signature

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"

GOLDEN_BODY = b'{"object":"whatsapp_business_account","entry":[]}'
GOLDEN_SECRET = "s3cr3t"
GOLDEN_HEADER = "sha256=db780e74b7152a02fc0b09479909f9711f095199be060883718889797fa8638d"

# Meta-escaped unicode, surrogate-pair emoji and `\/` slashes, signed as the raw file bytes.
UNICODE_FIXTURE = FIXTURES / "unicode_escaped.json"
UNICODE_SECRET = "whatsray-golden-secret"
UNICODE_HEADER = "sha256=17b9af95fef0aa2a018c6961a61861622a436a7d4eda272b03d8e301f46cdadc"


def test_header_name_is_metas() -> None:
    assert SIGNATURE_HEADER == "X-Hub-Signature-256"


def test_golden_signature() -> None:
    assert sign(GOLDEN_SECRET, GOLDEN_BODY) == GOLDEN_HEADER
    assert verify_signature(GOLDEN_SECRET, GOLDEN_BODY, GOLDEN_HEADER)


def test_golden_signature_of_meta_escaped_body() -> None:
    raw = UNICODE_FIXTURE.read_bytes()
    assert b"\\u00e4\\u00f6\\u00e5" in raw and b"\\ud83d\\ude00" in raw and b"https:\\/\\/" in raw
    assert sign(UNICODE_SECRET, raw) == UNICODE_HEADER
    assert verify_signature(UNICODE_SECRET, raw, UNICODE_HEADER)


def test_uppercase_hex_and_surrounding_space_still_verify() -> None:
    header = "sha256=" + GOLDEN_HEADER.removeprefix("sha256=").upper()
    assert verify_signature(GOLDEN_SECRET, GOLDEN_BODY, header)
    assert verify_signature(GOLDEN_SECRET, GOLDEN_BODY, GOLDEN_HEADER + " ")


@pytest.mark.parametrize("position", [0, 10, len(GOLDEN_BODY) - 1])
def test_one_flipped_byte_fails(position: int) -> None:
    body = bytearray(GOLDEN_BODY)
    body[position] ^= 0x01
    assert not verify_signature(GOLDEN_SECRET, bytes(body), GOLDEN_HEADER)


def test_flipped_byte_in_escaped_body_fails() -> None:
    raw = bytearray(UNICODE_FIXTURE.read_bytes())
    raw[raw.index(b"\\u00e4") + 5] ^= 0x01  # \u00e4 -> \u00e5: same JSON shape, other bytes
    assert not verify_signature(UNICODE_SECRET, bytes(raw), UNICODE_HEADER)


def test_wrong_secret_fails() -> None:
    assert not verify_signature("not-the-secret", GOLDEN_BODY, GOLDEN_HEADER)


@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_reserialised_json_does_not_match_the_original_signature(ensure_ascii: bool) -> None:
    raw = UNICODE_FIXTURE.read_bytes()
    reserialised = json.dumps(json.loads(raw), separators=(",", ":"), ensure_ascii=ensure_ascii)
    body = reserialised.encode()
    assert json.loads(body) == json.loads(raw)  # same content...
    assert body != raw  # ...other bytes: Python writes "/" not "\/", and may unescape unicode
    assert not verify_signature(UNICODE_SECRET, body, UNICODE_HEADER)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "sha256",
        "sha1=" + GOLDEN_HEADER.removeprefix("sha256="),
        GOLDEN_HEADER.removeprefix("sha256="),
        "sha256=zz" + GOLDEN_HEADER[9:],
        "sha256=" + "0" * 64,
        GOLDEN_HEADER[:-1],
        "sha256=ü" + GOLDEN_HEADER[8:],
    ],
)
def test_missing_or_garbled_headers_fail(header: str | None) -> None:
    assert not verify_signature(GOLDEN_SECRET, GOLDEN_BODY, header)


def test_handshake_with_the_right_token_returns_the_challenge() -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": "tok-123", "hub.challenge": "1158201444"}
    assert verify_handshake(params, "tok-123") == "1158201444"


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1158201444"},
        {"hub.mode": "unsubscribe", "hub.verify_token": "tok-123", "hub.challenge": "1158201444"},
        {"hub.verify_token": "tok-123", "hub.challenge": "1158201444"},
        {"hub.mode": "subscribe", "hub.challenge": "1158201444"},
        {"hub.mode": "subscribe", "hub.verify_token": "tok-123"},
        {"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1158201444"},
        {"hub.mode": "subscribe", "hub.verify_token": "tok-1234", "hub.challenge": "1158201444"},
        {},
    ],
)
def test_handshake_refuses_wrong_token_wrong_mode_or_missing(params: dict[str, str]) -> None:
    assert verify_handshake(params, "tok-123") is None
