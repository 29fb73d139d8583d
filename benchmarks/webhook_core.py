"""How fast the pure webhook path is: signature check + parse, per body, on one core.

Run:  .venv/bin/python benchmarks/webhook_core.py [--seconds 2]
Prints a table: body, bytes, events per body, bodies/s and events/s for verify, parse, and both.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from whatsray.whatsapp.parsing import parse_webhook
from whatsray.whatsapp.signature import sign, verify_signature

SECRET = "benchmark-secret"


def _text_message(i: int) -> dict[str, object]:
    return {
        "from": f"1650555{i:04d}",
        "id": f"wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQTdC{i:08d}",
        "timestamp": "1749416383",
        "type": "text",
        "text": {"body": f"Hola, ¿me ayudas con el pedido {i}? https://example.com/o/{i}"},
    }


def _status(i: int) -> dict[str, object]:
    return {
        "id": f"wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI{i:08d}",
        "status": "delivered",
        "timestamp": "1749416390",
        "recipient_id": f"1650555{i:04d}",
        "pricing": {"billable": True, "pricing_model": "PMP", "category": "service"},
    }


def body(messages: int, statuses: int) -> bytes:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "contacts": [
            {"profile": {"name": f"User {i}"}, "wa_id": f"1650555{i:04d}"} for i in range(messages)
        ],
        "messages": [_text_message(i) for i in range(messages)],
        "statuses": [_status(i) for i in range(statuses)],
    }
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}],
    }
    # Meta's form: escaped unicode and escaped slashes.
    return json.dumps(payload, ensure_ascii=True).replace("/", "\\/").encode()


def rate(fn: Callable[[], object], seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(50):
            fn()
        count += 50
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per cell")
    args = parser.parse_args()
    cases = {
        "1 text message": body(1, 0),
        "1 status": body(0, 1),
        "50 msgs + 50 statuses": body(50, 50),
    }
    print("| body | bytes | events | verify/s | parse/s | verify+parse bodies/s | events/s |")
    print("|---|---|---|---|---|---|---|")
    for name, raw in cases.items():
        header = sign(SECRET, raw)
        events = len(parse_webhook(raw))
        verify = rate(
            lambda raw=raw, header=header: verify_signature(SECRET, raw, header), args.seconds
        )
        parse = rate(lambda raw=raw: parse_webhook(raw), args.seconds)
        both = rate(
            lambda raw=raw, header=header: (
                verify_signature(SECRET, raw, header) and parse_webhook(raw)
            ),
            args.seconds,
        )
        print(
            f"| {name} | {len(raw)} | {events} | {verify:,.0f} | {parse:,.0f} | {both:,.0f} "
            f"| {both * events:,.0f} |"
        )


if __name__ == "__main__":
    main()
