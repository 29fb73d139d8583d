"""The store's schema, as an ordered list of migrations (see `migrations.py`).

Never edit a released migration: add a new one. Conventions: times are unix seconds in DOUBLE
columns; JSON documents (raw payloads, send bodies, session state) are VARCHAR holding JSON text;
id lists are VARCHAR[]; a status history is a list of structs (appended in SQL, never rewritten).
"""

from __future__ import annotations

from whatsray.store.migrations import Migration

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]

_V1 = (
    # One row per user and business number (keyed by chat): what the admin search looks at.
    """CREATE TABLE contacts (
        chat VARCHAR PRIMARY KEY,
        phone_number_id VARCHAR NOT NULL,
        phone VARCHAR,
        bsuid VARCHAR,
        profile_name VARCHAR,
        first_seen DOUBLE NOT NULL,
        last_seen DOUBLE NOT NULL
    )""",
    # The conversation: who is in charge, handoff, and the last inbound time (24-hour window).
    """CREATE TABLE chats (
        chat VARCHAR PRIMARY KEY,
        phone_number_id VARCHAR NOT NULL,
        user_id VARCHAR NOT NULL,
        agent VARCHAR,
        handoff BOOLEAN NOT NULL DEFAULT false,
        last_inbound_at DOUBLE,
        created_at DOUBLE NOT NULL,
        updated_at DOUBLE NOT NULL
    )""",
    # Arrival order: Meta's timestamps have one-second resolution, too coarse for a burst.
    "CREATE SEQUENCE message_seq START 1",
    # Both directions. id = wamid (inbound: a repeated insert is a no-op) or outbound id.
    """CREATE TABLE messages (
        id VARCHAR PRIMARY KEY,
        seq BIGINT NOT NULL DEFAULT nextval('message_seq'),
        chat VARCHAR NOT NULL,
        direction VARCHAR NOT NULL CHECK (direction IN ('in', 'out')),
        type VARCHAR NOT NULL,
        text VARCHAR,
        raw VARCHAR,
        wamid VARCHAR,
        status VARCHAR,
        status_history STRUCT(status VARCHAR, changed_at DOUBLE, error_code INTEGER)[]
            NOT NULL DEFAULT [],
        turn_id VARCHAR,
        created_at DOUBLE NOT NULL,
        updated_at DOUBLE NOT NULL
    )""",
    """CREATE TABLE turns (
        turn_id VARCHAR PRIMARY KEY,
        chat VARCHAR NOT NULL,
        agent VARCHAR,
        engine VARCHAR,
        input_ids VARCHAR[] NOT NULL,
        reply_ids VARCHAR[] NOT NULL,
        tokens_in BIGINT NOT NULL CHECK (tokens_in >= 0),
        tokens_out BIGINT NOT NULL CHECK (tokens_out >= 0),
        latency_ms DOUBLE NOT NULL,
        outcome VARCHAR NOT NULL,
        error VARCHAR,
        started_at DOUBLE NOT NULL,
        finished_at DOUBLE
    )""",
    # Session state beyond the chat row's agent / handoff / last inbound (see SessionSnapshot).
    """CREATE TABLE sessions (
        chat VARCHAR PRIMARY KEY,
        summary VARCHAR,
        state VARCHAR NOT NULL DEFAULT '{}',
        updated_at DOUBLE NOT NULL
    )""",
    # The outbox ledger: recorded before the send, updated with the wamid after it.
    """CREATE TABLE outbound (
        outbound_id VARCHAR PRIMARY KEY,
        chat VARCHAR NOT NULL,
        phone_number_id VARCHAR NOT NULL,
        recipient VARCHAR NOT NULL,
        body VARCHAR NOT NULL,
        turn_id VARCHAR,
        part INTEGER NOT NULL CHECK (part >= 0),
        status VARCHAR NOT NULL,
        wamid VARCHAR,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error VARCHAR,
        last_error_code INTEGER,
        created_at DOUBLE NOT NULL,
        updated_at DOUBLE NOT NULL
    )""",
    "CREATE INDEX outbound_wamid ON outbound (wamid)",
    """CREATE TABLE dead_letters (
        id VARCHAR PRIMARY KEY,
        outbound_id VARCHAR NOT NULL,
        chat VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        error_code INTEGER,
        details VARCHAR,
        created_at DOUBLE NOT NULL,
        replayed_at DOUBLE,
        replay_outbound_id VARCHAR
    )""",
    # Status webhooks can overtake `mark_sent` (Meta answers the send, then the webhook races
    # the ledger update). They wait here and are merged when the wamid becomes known.
    """CREATE TABLE early_statuses (
        wamid VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        status_at DOUBLE NOT NULL,
        error_code INTEGER,
        received_at DOUBLE NOT NULL
    )""",
)

_V2 = (
    # The tool calls of a turn, in order, each with its result: written in the turn's own
    # transaction and replaced with it (a turn recorded again replaces its calls).
    """CREATE TABLE tool_calls (
        turn_id VARCHAR NOT NULL,
        idx INTEGER NOT NULL CHECK (idx >= 0),
        call_id VARCHAR NOT NULL,
        name VARCHAR NOT NULL,
        arguments VARCHAR NOT NULL,
        result VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        PRIMARY KEY (turn_id, idx)
    )""",
)

_V3 = (
    # Scheduled jobs (whatsray.scheduling): the source of truth the scheduler loads at start.
    # trigger, payload and quiet_hours are JSON documents; active_since is when the current
    # schedule began (created, restarted or its trigger changed): no run before it is due.
    """CREATE TABLE jobs (
        id VARCHAR PRIMARY KEY,
        name VARCHAR NOT NULL,
        kind VARCHAR NOT NULL CHECK (kind IN ('reminder', 'system')),
        chat VARCHAR,
        payload VARCHAR NOT NULL,
        trigger VARCHAR NOT NULL,
        timezone VARCHAR,
        quiet_hours VARCHAR,
        misfire_grace_s DOUBLE NOT NULL CHECK (misfire_grace_s >= 0),
        coalesce BOOLEAN NOT NULL,
        enabled BOOLEAN NOT NULL,
        active_since DOUBLE NOT NULL,
        created_at DOUBLE NOT NULL,
        updated_at DOUBLE NOT NULL
    )""",
    # The exactly-once ledger: run_id = job id + scheduled fire time, inserted if absent before
    # the run is dispatched; status moves from 'pending' once (dispatched, done, skipped, failed).
    """CREATE TABLE job_runs (
        run_id VARCHAR PRIMARY KEY,
        job_id VARCHAR NOT NULL,
        scheduled_for DOUBLE NOT NULL,
        due_at DOUBLE NOT NULL,
        status VARCHAR NOT NULL
            CHECK (status IN ('pending', 'dispatched', 'done', 'skipped', 'failed')),
        reason VARCHAR,
        result VARCHAR,
        entry_id VARCHAR,
        created_at DOUBLE NOT NULL,
        updated_at DOUBLE NOT NULL
    )""",
)

_V4 = (
    # What an outbound message is for (reminder, greeting, handoff_notice...; NULL: a reply):
    # outside the 24-hour window the outbox sends that purpose's template in its place.
    "ALTER TABLE outbound ADD COLUMN purpose VARCHAR",
)

_V5 = (
    # Opt-in to the built-in user-facing jobs (the morning greeting): `/subscribe` sets it,
    # `/unsubscribe` clears it; a contact is opted out until it asks.
    "ALTER TABLE contacts ADD COLUMN opted_in BOOLEAN DEFAULT false",
)

_V6 = (
    # Every inbound message's one outcome (docs/errors.md, "The account"): answered, coalesced,
    # recorded, handed_off, quarantined, not_served or outside_window; `outcome_ref` names the
    # turn, quarantine record or dead letter. NULL: not settled (a replayed message, until its
    # turn). Messages stored before this version were answered if a turn consumed them.
    "ALTER TABLE messages ADD COLUMN outcome VARCHAR",
    "ALTER TABLE messages ADD COLUMN outcome_ref VARCHAR",
    "UPDATE messages SET outcome = CASE WHEN turn_id IS NULL THEN 'recorded' ELSE 'answered'"
    " END, outcome_ref = turn_id WHERE direction = 'in'",
    # Items the pipeline gave up on (whatsray.store.quarantine): why, and the events themselves
    # as the inbox held them, so that the admin API can replay them.
    """CREATE TABLE quarantine (
        id VARCHAR PRIMARY KEY,
        chat VARCHAR,
        stage VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        error VARCHAR NOT NULL,
        event_ids VARCHAR[] NOT NULL,
        events VARCHAR NOT NULL,
        turn_id VARCHAR,
        created_at DOUBLE NOT NULL,
        replayed_at DOUBLE
    )""",
)

_V7 = (
    # What the agent made of a turn (whatsray.agents.AgentOutcome: ok, no_knowledge, greeting,
    # empty_reply, engine_error), beside the turn's own outcome: `no_knowledge` is the FAQ
    # agent's fixed "I don't know" (docs/analytics.md). NULL: not known (older turns, handoffs).
    "ALTER TABLE turns ADD COLUMN agent_outcome VARCHAR",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "contacts, chats, messages, turns, sessions, outbound, dead letters", _V1),
    Migration(2, "tool calls of turns", _V2),
    Migration(3, "scheduled jobs and their runs", _V3),
    Migration(4, "the purpose of outbound messages (templates outside the window)", _V4),
    Migration(5, "contacts opt in to greetings", _V5),
    Migration(6, "the outcome of every inbound message; quarantined items", _V6),
    Migration(7, "what the agent made of each turn (the FAQ's I don't know)", _V7),
)

SCHEMA_VERSION = MIGRATIONS[-1].version
