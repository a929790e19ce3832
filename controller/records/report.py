"""`voxgate report`: the manager's numbers for a date range and flow, as tables or an HTML page.

Daily figures come from the `call_daily` view (the same one BI tools read, see docs/cdr.md);
latency percentiles are computed here from the turns, because SQLite has no percentile function.
"""

from __future__ import annotations

import html
import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from typing import Any

from sqlalchemy import bindparam, create_engine, text
from sqlalchemy.pool import NullPool

from controller.records.models import UtcDateTime


@dataclass(frozen=True, slots=True)
class DayFlow:
    day: str
    flow: str
    calls: int
    answered: int
    avg_handle_s: float | None
    transferred: int
    contained: int

    @property
    def containment(self) -> float | None:
        return self.contained / self.answered if self.answered else None

    @property
    def transfer_rate(self) -> float | None:
        return self.transferred / self.answered if self.answered else None


@dataclass(frozen=True, slots=True)
class Latency:
    day: str
    flow: str
    replies: int
    p50_ms: float | None
    p95_ms: float | None
    barged_in: int

    @property
    def barge_in_rate(self) -> float:
        return self.barged_in / self.replies if self.replies else 0.0


@dataclass(frozen=True, slots=True)
class Report:
    since: date | None
    until: date | None
    flow: str | None
    days: list[DayFlow]
    causes: list[tuple[str, int]]
    latency: list[Latency]
    replies: list[Any]  # the agent replies `latency` comes from (rows), for figures pooled another way


def build_report(database_url: str, since: date | None = None, until: date | None = None,
                 flow: str | None = None) -> Report:
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            days = [DayFlow(str(r.day), r.flow, r.calls, r.answered, _float(r.avg_handle_s), r.transferred,
                            r.contained) for r in connection.execute(*_daily(since, until, flow))]
            causes = [(r.hangup_cause, r.calls) for r in connection.execute(*_causes(since, until, flow))]
            replies = list(connection.execute(*_replies(since, until, flow)))
    finally:
        engine.dispose()
    return Report(since, until, flow, days, causes, _latency(replies), replies)


def _where(column: str, since: date | None, until: date | None, flow: str | None, flow_column: str = "flow",
           *, days: bool = False) -> tuple[str, dict[str, Any]]:
    """The date range (whole days, inclusive) and flow as SQL; `days` when the column holds dates."""
    clauses, params = ["1 = 1"], {}
    if since is not None:
        clauses.append(f"{column} >= :since")
        params["since"] = since if days else datetime.combine(since, time.min, timezone.utc)
    if until is not None:
        clauses.append(f"{column} <= :until")
        params["until"] = until if days else datetime.combine(until, time.max, timezone.utc)
    if flow is not None:
        clauses.append(f"{flow_column} = :flow")
        params["flow"] = flow
    return " AND ".join(clauses), params


def _daily(since: date | None, until: date | None, flow: str | None) -> tuple[Any, dict[str, Any]]:
    where, params = _where("day", since, until, flow, days=True)
    return text(f"SELECT * FROM call_daily WHERE {where} ORDER BY day, flow"), params


def _causes(since: date | None, until: date | None, flow: str | None) -> tuple[Any, dict[str, Any]]:
    where, params = _where("started_at", since, until, flow)
    return _timed(text(f"SELECT hangup_cause, count(*) AS calls FROM calls WHERE {where} "
                       "GROUP BY hangup_cause ORDER BY calls DESC, hangup_cause LIMIT 10"), params), params


def _replies(since: date | None, until: date | None, flow: str | None) -> tuple[Any, dict[str, Any]]:
    where, params = _where("t.started_at", since, until, flow, "c.flow")
    query = text("SELECT t.started_at, c.flow, t.voice_to_voice_ms, t.interrupted FROM turns t "
                 "JOIN calls c ON c.pbx = t.pbx AND c.call_uuid = t.call_uuid "
                 f"WHERE t.speaker = 'agent' AND {where}").columns(started_at=UtcDateTime())
    return _timed(query, params), params


def _timed(query: Any, params: dict[str, Any]) -> Any:
    """Bind the range as stored times (UTC, naive on SQLite), not as the driver's default text."""
    names = [name for name in ("since", "until") if name in params]
    return query.bindparams(*(bindparam(name, type_=UtcDateTime()) for name in names))


def _latency(rows: list[Any]) -> list[Latency]:
    groups: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for row in rows:
        groups[(row.started_at.date().isoformat(), row.flow)].append(row)
    out = []
    for (day, flow), group in sorted(groups.items()):
        v2v = sorted(r.voice_to_voice_ms for r in group if r.voice_to_voice_ms is not None)
        out.append(Latency(day, flow, len(group), percentile(v2v, 50), percentile(v2v, 95),
                           sum(1 for r in group if r.interrupted)))
    return out


def percentile(values: list[float], pct: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


# ---------------------------------------------------------------- rendering


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _tables(report: Report) -> list[tuple[str, list[str], list[list[str]]]]:
    return [
        ("Calls by day", ["day", "flow", "calls", "answered", "avg handle s", "contained", "transfer rate"],
         [[d.day, d.flow, str(d.calls), str(d.answered), _ms(d.avg_handle_s), _pct(d.containment),
           _pct(d.transfer_rate)] for d in report.days]),
        ("Top hangup causes", ["cause", "calls"], [[cause, str(n)] for cause, n in report.causes]),
        ("Agent replies by day", ["day", "flow", "replies", "v2v p50 ms", "v2v p95 ms", "barge-in rate"],
         [[r.day, r.flow, str(r.replies), _ms(r.p50_ms), _ms(r.p95_ms), _pct(r.barge_in_rate)]
          for r in report.latency]),
    ]


def render_text(report: Report) -> str:
    lines = [f"voxgate report: {_scope(report)}"]
    for title, header, rows in _tables(report):
        lines += ["", title]
        if not rows:
            lines.append("  (no data)")
            continue
        widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
        for row in (header, *rows):
            lines.append("  " + "  ".join(cell.rjust(width) for cell, width in zip(row, widths)))
    return "\n".join(lines) + "\n"


def render_html(report: Report) -> str:
    parts = [f"<!doctype html><meta charset=utf-8><title>voxgate report</title><style>{_CSS}</style>",
             f"<h1>voxgate report</h1><p>{html.escape(_scope(report))}</p>",
             "<h2>Calls per day</h2>", _bars([(d.day + " " + d.flow, d.calls) for d in report.days], "calls"),
             "<h2>Voice-to-voice p95 per day (ms)</h2>",
             _bars([(r.day + " " + r.flow, r.p95_ms or 0) for r in report.latency], "ms")]
    for title, header, rows in _tables(report):
        cells = "".join(f"<tr>{''.join(f'<td>{html.escape(c)}</td>' for c in row)}</tr>" for row in rows)
        parts.append(f"<h2>{html.escape(title)}</h2><table><tr>{''.join(f'<th>{html.escape(h)}</th>' for h in header)}"
                     f"</tr>{cells or '<tr><td>(no data)</td></tr>'}</table>")
    return "\n".join(parts)


def _bars(points: list[tuple[str, float]], unit: str) -> str:
    """A horizontal bar chart as inline SVG: no script, no network, opens anywhere."""
    if not points:
        return "<p>(no data)</p>"
    top = max(value for _, value in points) or 1
    height = 22 * len(points) + 4
    bars = "".join(
        f'<text x="0" y="{22 * i + 16}">{html.escape(label)}</text>'
        f'<rect x="190" y="{22 * i + 4}" width="{360 * value / top:.1f}" height="16"></rect>'
        f'<text x="{196 + 360 * value / top:.1f}" y="{22 * i + 16}">{value:.0f} {unit}</text>'
        for i, (label, value) in enumerate(points))
    return f'<svg width="640" height="{height}" role="img">{bars}</svg>'


def _scope(report: Report) -> str:
    since = report.since.isoformat() if report.since else "the first call"
    until = report.until.isoformat() if report.until else "today"
    return f"{since} to {until}, flow {report.flow or 'all'}"


_CSS = ("body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}svg text{font-size:12px}"
        "rect{fill:#3b7dd8}")
