"""`whatsray status`'s terminal view of a `GET /api/status` snapshot: pure, no I/O.

Sections with aligned columns, like `ray status`. `?` marks a number a part did not report (it
is named under "Unavailable"); `-` means there is nothing to show (no pending entry, say).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from whatsray.admin.status_models import StatusOut

__all__ = ["format_age", "render_status"]

UNKNOWN = "?"
NOTHING = "-"


def render_status(status: StatusOut, url: str) -> str:
    """The whole view, lines joined, ending without a newline."""
    lines = [f"whatsray at {url}, {_when(status.taken_at)}", ""]
    for title, body in (
        ("Partitions", _partitions(status)),
        ("Sessions", _sessions(status)),
        ("Agents", _agents(status)),
        ("Outboxes", _outboxes(status)),
        ("Dead letters", [_count(status.dead_letters, "not replayed")]),
        ("Handoffs", [_count(status.handoffs, "active")]),
        ("Next runs", _next_runs(status)),
    ):
        lines += [title, *(f"  {line}" for line in body), ""]
    if status.unavailable:
        lines.append(f"Unavailable (did not answer): {', '.join(status.unavailable)}")
    return "\n".join(lines).rstrip("\n")


def format_age(seconds: float) -> str:
    """A short duration: 0.4s, 12s, 3m05s, 2h10m, 3d04h."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _num(value: float | None) -> str:
    if value is None:
        return UNKNOWN
    return f"{value:g}" if isinstance(value, float) else str(value)


def _age(seconds: float | None, known: bool) -> str:
    """An age; `-` when there is nothing pending (None), `?` when the part did not say."""
    if not known:
        return UNKNOWN
    return NOTHING if seconds is None else format_age(seconds)


def _count(value: int | None, what: str) -> str:
    return f"{_num(value)} {what}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> list[str]:
    """Columns padded to their widest cell; `align` has an "l" or "r" per column."""
    if not rows:
        return ["(none)"]
    cells = [list(headers), *(list(row) for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return [
        "  ".join(
            cell.rjust(width) if side == "r" else cell.ljust(width)
            for cell, width, side in zip(row, widths, align, strict=True)
        ).rstrip()
        for row in cells
    ]


def _partitions(status: StatusOut) -> list[str]:
    rows = [
        [
            str(p.partition),
            _num(p.lag),
            _num(p.pending),
            _age(p.oldest_pending_s if p.pending else None, p.lag is not None),
        ]
        for p in status.partitions
    ]
    return _table(["PARTITION", "LAG", "PENDING", "OLDEST PENDING"], rows, "rrrr")


def _sessions(status: StatusOut) -> list[str]:
    rows = [
        [str(p.partition), _num(p.sessions_active), _num(p.sessions_busy)]
        for p in status.partitions
    ]
    return _table(["PARTITION", "ACTIVE", "BUSY"], rows, "rrr")


def _agents(status: StatusOut) -> list[str]:
    rows = []
    for a in status.agents:
        known = a.workers is not None
        engine = (
            f"{a.engine_running}/{a.engine_waiting}"
            if a.engine_running is not None
            else (NOTHING if known else UNKNOWN)
        )
        saturated = UNKNOWN if a.saturated is None else ("yes" if a.saturated else "no")
        rows.append(
            [
                a.agent,
                _num(a.workers),
                _num(a.running),
                _num(a.waiting),
                _num(a.capacity),
                engine,
                saturated,
            ]
        )
    headers = ["AGENT", "WORKERS", "RUNNING", "WAITING", "CAPACITY", "ENGINE RUN/WAIT", "SATURATED"]
    return _table(headers, rows, "lrrrrrl")


def _outboxes(status: StatusOut) -> list[str]:
    rows = []
    for o in status.outboxes:
        known = o.queue_depth is not None
        tokens = (
            f"{o.tokens_available:g}/{o.throughput_mps:g}"
            if o.tokens_available is not None and o.throughput_mps is not None
            else UNKNOWN
        )
        rows.append(
            [
                o.phone_number_id,
                _num(o.queue_depth),
                _age(o.oldest_pending_s, known),
                tokens,
                _num(o.pair_buckets),
                _num(o.waiting_sends),
            ]
        )
    headers = ["PHONE NUMBER ID", "QUEUE", "OLDEST PENDING", "TOKENS/MPS", "PAIRS", "WAITING"]
    return _table(headers, rows, "lrrrrr")


def _next_runs(status: StatusOut) -> list[str]:
    if status.next_runs is None:
        return [UNKNOWN]
    rows = [
        [
            _when(run.at),
            f"in {format_age(max(0.0, run.at - status.taken_at))}",
            run.name,
            run.kind,
            run.chat or NOTHING,
        ]
        for run in status.next_runs
    ]
    return _table(["AT", "IN", "JOB", "KIND", "CHAT"], rows, "lllll")
