"""Typed Meta errors: the one code table, transience, pickling, and tolerance of bad bodies."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest

from whatsray.whatsapp.errors import (
    ALL_ERROR_CLASSES,
    AppRateLimitError,
    AuthError,
    GraphTimeoutError,
    InvalidParameterError,
    MaintenanceError,
    MarketingLimitError,
    MetaApiError,
    PairRateLimitError,
    PermissionDeniedError,
    PolicyError,
    ReEngagementError,
    ServerError,
    SpamRateLimitError,
    TemplateError,
    ThroughputLimitError,
    TransportError,
    UndeliverableError,
    UnknownMetaError,
    WhatsAppError,
    error_class_for_code,
    error_from_meta,
    error_from_response,
)

FIELDS = ("message", "code", "details", "fbtrace_id", "http_status", "retry_after", "raw")


@pytest.mark.parametrize("cls", ALL_ERROR_CLASSES, ids=lambda c: c.__name__)
def test_every_error_class_survives_pickle_with_all_fields(cls: type[WhatsAppError]) -> None:
    error = cls(
        "boom",
        code=131000,
        details="the details",
        fbtrace_id="AbC123",
        http_status=503,
        retry_after=2.5,
        raw={"code": 131000, "is_transient": True, "nested": {"a": [1, 2]}},
    )
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    for field in FIELDS:
        assert getattr(copy, field) == getattr(error, field), field
    assert copy.is_transient == error.is_transient
    assert str(copy) == str(error)
    assert copy.args == error.args


@pytest.mark.parametrize("cls", ALL_ERROR_CLASSES, ids=lambda c: c.__name__)
def test_default_retry_after_survives_pickle(cls: type[WhatsAppError]) -> None:
    error = cls("plain", http_status=400)
    copy = pickle.loads(pickle.dumps(error))
    assert copy.retry_after == cls.default_retry_after
    assert copy.is_transient == error.is_transient


def test_all_error_classes_lists_every_class_once() -> None:
    assert len(set(ALL_ERROR_CLASSES)) == len(ALL_ERROR_CLASSES)
    for cls in (ThroughputLimitError, PairRateLimitError, TemplateError, MaintenanceError):
        assert cls in ALL_ERROR_CLASSES


CODE_TABLE: list[tuple[int, type[MetaApiError], bool]] = [
    (130429, ThroughputLimitError, True),
    (131056, PairRateLimitError, True),
    (131047, ReEngagementError, False),
    (131026, UndeliverableError, False),
    (0, AuthError, False),
    (190, AuthError, False),
    (3, PermissionDeniedError, False),
    (10, PermissionDeniedError, False),
    (200, PermissionDeniedError, False),
    (250, PermissionDeniedError, False),
    (299, PermissionDeniedError, False),
    (100, InvalidParameterError, False),
    (131008, InvalidParameterError, False),
    (131009, InvalidParameterError, False),
    (135000, InvalidParameterError, False),
    (131048, SpamRateLimitError, False),
    (368, PolicyError, False),
    (131031, PolicyError, False),
    (130497, PolicyError, False),
    (131064, PolicyError, False),
    (132000, TemplateError, False),
    (132001, TemplateError, False),
    (132015, TemplateError, False),
    (132999, TemplateError, False),
    (1, ServerError, True),
    (2, ServerError, True),
    (131000, ServerError, True),
    (131016, ServerError, True),
    (131057, MaintenanceError, True),
    (133004, ServerError, True),
    (4, AppRateLimitError, True),
    (80007, AppRateLimitError, True),
    (131049, MarketingLimitError, False),
    (131050, MarketingLimitError, False),
]


@pytest.mark.parametrize(("code", "cls", "transient"), CODE_TABLE)
def test_code_table(code: int, cls: type[MetaApiError], transient: bool) -> None:
    assert error_class_for_code(code) is cls
    error = error_from_meta({"code": code, "message": "m"}, http_status=400)
    assert type(error) is cls
    assert error.code == code
    assert error.is_transient is transient


@pytest.mark.parametrize("code", [300, 131999, 133000, 999999, None])
def test_codes_outside_the_table_fall_back_to_unknown(code: int | None) -> None:
    assert error_class_for_code(code) is UnknownMetaError


def test_rate_limits_carry_a_default_retry_after() -> None:
    assert error_from_meta({"code": 130429}).retry_after == 1.0
    assert error_from_meta({"code": 131056}).retry_after == 6.0
    assert error_from_meta({"code": 131057}).retry_after == 60.0
    assert error_from_meta({"code": 100}).retry_after is None


@pytest.mark.parametrize(
    ("http_status", "meta_transient", "transient"),
    [
        (400, None, False),
        (500, None, True),
        (503, None, True),
        (400, True, True),
        (500, False, True),
    ],
)
def test_unknown_code_transient_when_5xx_or_meta_says_so(
    http_status: int, meta_transient: bool | None, transient: bool
) -> None:
    error_obj: dict[str, Any] = {"code": 987654, "message": "new code"}
    if meta_transient is not None:
        error_obj["is_transient"] = meta_transient
    error = error_from_response(http_status, json.dumps({"error": error_obj}).encode())
    assert type(error) is UnknownMetaError
    assert error.is_transient is transient
    assert pickle.loads(pickle.dumps(error)).is_transient is transient


def test_full_meta_body_fills_every_field() -> None:
    body = {
        "error": {
            "message": "(#130429) Rate limit hit",
            "type": "OAuthException",
            "code": 130429,
            "error_data": {
                "messaging_product": "whatsapp",
                "details": "Cloud API message throughput has been reached.",
            },
            "error_subcode": 2494055,
            "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam",
        }
    }
    error = error_from_response(400, json.dumps(body).encode())
    assert isinstance(error, ThroughputLimitError)
    assert error.message == "(#130429) Rate limit hit"
    assert error.details == "Cloud API message throughput has been reached."
    assert error.fbtrace_id == "Az8or2yhqkZfEZ-_4Qn_Bam"
    assert error.http_status == 400
    assert error.raw == body["error"]
    assert str(error) == (
        "[130429] (#130429) Rate limit hit (Cloud API message throughput has been reached.)"
    )


def test_status_webhook_error_uses_title_when_there_is_no_message() -> None:
    error = error_from_meta(
        {"code": 131047, "title": "Re-engagement message", "error_data": {"details": "24h"}}
    )
    assert isinstance(error, ReEngagementError)
    assert error.message == "Re-engagement message"
    assert error.details == "24h"
    assert error.http_status is None


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html><body>502 Bad Gateway</body></html>",
        b"\xff\xfe not utf-8",
        b"[]",
        b"null",
        b'"just a string"',
        b"{}",
        b'{"error": "a string, not an object"}',
        b'{"error": null}',
        b'{"error": {"code": 1',
    ],
)
def test_malformed_bodies_become_unknown_errors(body: bytes) -> None:
    error = error_from_response(502, body)
    assert type(error) is UnknownMetaError
    assert error.http_status == 502
    assert error.is_transient  # a 502 is the server's problem
    assert error.code is None
    assert "502" in error.message


def test_malformed_4xx_body_is_not_transient() -> None:
    error = error_from_response(404, b"Not Found")
    assert type(error) is UnknownMetaError
    assert not error.is_transient
    assert error.details == "Not Found"


def test_error_body_with_odd_field_types_is_tolerated() -> None:
    body = {"error": {"code": True, "message": 42, "error_data": "x", "fbtrace_id": 7}}
    error = error_from_response(400, json.dumps(body).encode())
    assert type(error) is UnknownMetaError  # a bool is not a code
    assert error.code is None
    assert error.message == "42"
    assert error.details is None
    assert error.fbtrace_id is None


def test_transport_errors_are_transient() -> None:
    assert TransportError("refused").is_transient
    assert GraphTimeoutError("slow").is_transient
    assert issubclass(GraphTimeoutError, TransportError)
