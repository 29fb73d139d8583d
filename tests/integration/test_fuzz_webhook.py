"""`POST /webhook` fuzzed over real HTTP: random bodies and mutations of Meta's own payloads.

The webhook receiver with the platform's `InboxSink` over a real Valkey inbox (the session's
`EmbeddedValkey`), served by uvicorn on loopback. Hypothesis makes bodies (random bytes, random
JSON, Meta's payloads under tests/fixtures/webhooks/ with their bytes or their structure
mutated), most signed with the app secret (X-Hub-Signature-256, HMAC-SHA256 of the raw bytes),
some unsigned or wrongly signed. For each answer:

- never a 5xx;
- unsigned is 401 and wrongly signed 403, and nothing is stored;
- a body that is not UTF-8 JSON is a 4xx naming the problem, and nothing is stored;
- a well-formed signed body is a 200, and every message and status in it (found here by walking
  the JSON, not by the parser under test) is in the inbox: its dedupe key is set and a stream
  entry carries it.

"Nothing is stored" compares the inbox's stream lengths and the number of keys in Valkey before
and after the request: the ingress does nothing after its answer (the append is awaited first).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.loop_server import serve_in_loop
from whatsray.inbox import Inbox
from whatsray.inbox.entries import decode_entry
from whatsray.pipeline.ingest import InboxSink
from whatsray.whatsapp.events import MessageEvent, StatusEvent
from whatsray.whatsapp.parsing import MAX_DEPTH
from whatsray.whatsapp.signature import SIGNATURE_HEADER, sign
from whatsray.whatsapp.webhook_receiver import create_webhook_receiver

pytestmark = pytest.mark.integration

T = TypeVar("T")

SECRET = "fuzz-app-secret"
PARTITIONS = 4
EXAMPLES = 400
FIXTURES = sorted((Path(__file__).parents[1] / "fixtures" / "webhooks").glob("*.json"))
PAYLOADS = [path.read_bytes() for path in FIXTURES]


@dataclass
class Ingress:
    url: str
    inbox: Inbox
    redis: aioredis.Redis


@pytest.fixture
async def ingress(redis: aioredis.Redis) -> AsyncIterator[Ingress]:
    inbox = Inbox(redis, partitions=PARTITIONS)
    app = create_webhook_receiver(app_secret=SECRET, verify_token="v", on_events=InboxSink(inbox))
    async with serve_in_loop(app) as url:
        yield Ingress(url, inbox, redis)


# --- bodies ---------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every value below `node`."""
    if isinstance(node, dict | list):
        for key, child in node.items() if isinstance(node, dict) else enumerate(node):
            yield (*path, key)
            yield from _paths(child, (*path, key))


@st.composite
def mutated_documents(draw: st.DrawFn) -> bytes:
    """One of Meta's payloads with one to three values replaced, removed or doubled."""
    document = json.loads(draw(st.sampled_from(PAYLOADS)))
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(document))
        if not paths:
            break
        *parents, key = draw(st.sampled_from(paths))
        parent = document
        for step in parents:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "remove", "double", "nest"]))
        if action == "replace":
            parent[key] = draw(JSON_VALUES)
        elif action == "nest":  # far deeper than Meta ever nests
            for _ in range(draw(st.integers(1, 300))):
                parent[key] = [parent[key]] if draw(st.booleans()) else {"a": parent[key]}
        elif action == "remove":
            del parent[key]
        elif isinstance(parent, list):
            parent.append(parent[key])
        else:
            parent[key] = [parent[key], parent[key]]
    return json.dumps(document, ensure_ascii=draw(st.booleans())).encode()


@st.composite
def mutated_bytes(draw: st.DrawFn) -> bytes:
    """One of Meta's payloads with some bytes flipped, cut, inserted or removed."""
    raw = bytearray(draw(st.sampled_from(PAYLOADS)))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(raw)))
        action = draw(st.sampled_from(["flip", "cut", "insert", "remove"]))
        if action == "flip" and at < len(raw):
            raw[at] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del raw[at:]
        elif action == "insert":
            raw[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del raw[at : at + draw(st.integers(1, 16))]
    return bytes(raw)


BODIES = st.one_of(
    st.sampled_from(PAYLOADS),
    mutated_documents(),
    mutated_bytes(),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=200),
)
# How the body is signed: mostly right; else not at all, or wrongly.
SIGNINGS = st.sampled_from(["good"] * 6 + ["none", "other-secret", "flipped", "garbage"])


def _signature(signing: str, body: bytes) -> str | None:
    if signing == "none":
        return None
    if signing == "other-secret":
        return sign("not-the-" + SECRET, body)
    if signing == "flipped":
        good = sign(SECRET, body)
        return good[:-1] + ("0" if good[-1] != "0" else "1")
    if signing == "garbage":
        return "sha1=" + "ab" * 20
    return sign(SECRET, body)


# --- what the body holds, read independently of the parser ----------------------------------


MALFORMED = object()


def _well_formed(body: bytes) -> Any:
    """The JSON document, or `MALFORMED` when the body is not UTF-8 JSON (Meta's rules: a 400)."""

    def reject(name: str) -> Any:
        raise ValueError(name)

    try:
        document = json.loads(body.decode("utf-8"), parse_constant=reject)
    except (ValueError, RecursionError):  # UnicodeDecodeError, JSONDecodeError are ValueErrors
        return MALFORMED
    return MALFORMED if _depth(document) > MAX_DEPTH else document


def _depth(node: Any) -> int:
    """How deep arrays and objects nest (a scalar: 0)."""
    if isinstance(node, dict):
        return 1 + max(map(_depth, node.values()), default=0)
    if isinstance(node, list):
        return 1 + max(map(_depth, node), default=0)
    return 0


def _id(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    return value if isinstance(value, str) and value else None


def _expected(document: Any) -> tuple[set[str], set[tuple[str, str]]]:
    """The message ids, and (message id, status) of the statuses, of every `messages` change."""
    messages: set[str] = set()
    statuses: set[tuple[str, str]] = set()
    entries = document.get("entry") if isinstance(document, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        for change in changes if isinstance(changes, list) else []:
            if not isinstance(change, dict) or change.get("field") != "messages":
                continue
            value = change.get("value")
            if not isinstance(value, dict):
                continue
            for message in _list(value.get("messages")):
                if (wamid := _id(message.get("id"))) is not None:
                    messages.add(wamid)
            for status in _list(value.get("statuses")):
                wamid, state = _id(status.get("id")), status.get("status")
                if wamid is not None and isinstance(state, str):
                    statuses.add((wamid, state))
    return messages, statuses


def _list(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


# --- the inbox --------------------------------------------------------------------------------


async def _footprint(ingress: Ingress) -> tuple[Any, ...]:
    """What a stored event changes: the stream lengths and the number of keys (dedupe keys)."""
    lengths = [await ingress.inbox.length(p) for p in range(PARTITIONS)]
    return (*lengths, await ingress.redis.dbsize())


async def _stored(ingress: Ingress) -> tuple[set[str], set[tuple[str, str]], list[str]]:
    """The message ids and (id, status) pairs of every event in the streams, and their keys."""
    messages: set[str] = set()
    statuses: set[tuple[str, str]] = set()
    keys: list[str] = []
    for partition in range(PARTITIONS):
        for entry_id, fields in await ingress.redis.xrange(ingress.inbox.stream_key(partition)):
            entry = decode_entry(partition, entry_id, fields, None, quiet=True)
            assert entry.event is not None, entry  # nothing the webhook stores is poison
            event = entry.event
            keys.append(event.idempotency_key)
            if isinstance(event, MessageEvent) and event.message_id is not None:
                messages.add(event.message_id)
            if isinstance(event, StatusEvent) and event.message_id and event.raw_status:
                statuses.add((event.message_id, event.raw_status))
    return messages, statuses, keys


async def _deduped(ingress: Ingress, keys: list[str]) -> bool:
    return all([await ingress.redis.exists(ingress.inbox.dedupe_key(key)) for key in keys])


# --- the test -----------------------------------------------------------------------------------


async def test_signed_random_and_mutated_bodies_are_refused_or_stored(ingress: Ingress) -> None:
    loop = asyncio.get_running_loop()
    outcomes: Counter[tuple[str, int]] = Counter()

    def on_loop(coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=60)

    def fuzz(http: httpx.Client) -> None:
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(body=BODIES, signing=SIGNINGS)
        def one_post(body: bytes, signing: str) -> None:
            signature = _signature(signing, body)
            headers = {"Content-Type": "application/json"}
            if signature is not None:
                headers[SIGNATURE_HEADER] = signature
            before = on_loop(_footprint(ingress))
            response = http.post("/webhook", content=body, headers=headers)
            after = on_loop(_footprint(ingress))
            document = _well_formed(body)
            kind = "signed" if signing == "good" else signing
            outcomes[
                (kind if document is not MALFORMED else f"{kind} malformed", response.status_code)
            ] += 1
            context = (signing, body[:300])
            assert response.status_code < 500, (response.status_code, response.text, context)
            if signing != "good" or document is MALFORMED:
                expected = {"none": 401, "good": 400}.get(signing, 403)
                assert response.status_code == expected, (response.text, context)
                reason = response.json()["error"]
                assert isinstance(reason, str) and reason.strip(), (response.text, context)
                assert after == before, ("a refused body changed the inbox", context)
                return
            assert response.status_code == 200, (response.text, context)
            messages, statuses = _expected(document)
            stored_messages, stored_statuses, keys = on_loop(_stored(ingress))
            assert messages <= stored_messages, (messages - stored_messages, context)
            assert statuses <= stored_statuses, (statuses - stored_statuses, context)
            assert on_loop(_deduped(ingress, keys))

        one_post()

    with httpx.Client(base_url=ingress.url, timeout=30) as http:
        await asyncio.to_thread(fuzz, http)
    # Every kind of body and signing was tried, and well-formed ones stored messages.
    seen = {kind for kind, _ in outcomes}
    assert {"signed", "signed malformed", "none", "other-secret", "flipped", "garbage"} <= seen
    stored_messages, stored_statuses, _ = await _stored(ingress)
    assert stored_messages and stored_statuses, outcomes
