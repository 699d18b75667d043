"""A picture of the run: reports/timeline.html and reports/trace.json.

Both are drawn from the same RunResult the JSON report is written from.
The HTML is one self-contained file (inline SVG and CSS, no script, no
network): each attempt is a bar on a time axis, one lane per concurrency
slot, coloured by outcome, with queue waits, backoff gaps, timeouts and the
cancel instant marked, hover titles on every bar and a table of details.
trace.json is the Chrome Trace Event format, for Perfetto or
chrome://tracing. Every string from the run is escaped: a message such as
``<script>`` renders as text.
"""

from __future__ import annotations

import html
import itertools
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Final, NamedTuple

from trt._report import encode_json
from trt._results import RunResult
from trt._util import write_atomic

COLORS: Final = {
    "success": "#2e9d4f",
    "failed": "#d64545",
    "timed_out": "#e08a1e",
    "canceled": "#8a8a8a",
    "blocked": "#b9b9b9",
}
# Drawing geometry in SVG pixels.
WIDTH: Final = 1000
LEFT: Final = 70
# Room right of the axis for the last tick label and the cancel label.
RIGHT: Final = 80
LANE: Final = 28
BAR: Final = 18
TOP: Final = 30


class Bar(NamedTuple):
    """One attempt placed on the time axis."""

    task_id: str
    attempt: int
    status: str
    start_ms: float
    end_ms: float
    lane: int
    title: str
    timed_out: bool
    elapsed_ms: float
    # When the deadline passed (ms since the run started), for timeouts.
    deadline_ms: float | None


def _ms(stamp: str, origin: datetime) -> float:
    return (datetime.fromisoformat(stamp) - origin).total_seconds() * 1000


def place_attempts(result: RunResult) -> list[Bar]:
    """Give every attempt a lane: the first free one when it started.

    Lanes stand for concurrency slots; attempts never overlap within one,
    so there are at most as many lanes as attempts ever ran at once.
    """
    origin = datetime.fromisoformat(result.started_at)
    length = _ms(result.ended_at, origin)
    raw = []
    for task in result.tasks:
        if task.carried_over:
            continue  # its attempts belong to the run this one resumed
        for attempt in task.attempts:
            start = _ms(attempt.started_at, origin)
            if not 0 <= start <= length:
                # History from the run this one resumed: not on this clock.
                continue
            end = max(_ms(attempt.ended_at, origin), start)
            raw.append((start, end, task.id, attempt))
    raw.sort(key=lambda item: (item[0], item[1]))
    lane_ends: list[float] = []
    bars = []
    for start, end, task_id, attempt in raw:
        lane = next(
            (i for i, busy_until in enumerate(lane_ends) if busy_until <= start),
            len(lane_ends),
        )
        if lane == len(lane_ends):
            lane_ends.append(end)
        else:
            lane_ends[lane] = end
        title = f"{task_id} attempt {attempt.attempt}: {attempt.status}"
        title += f", {attempt.elapsed_ms:.1f} ms"
        if attempt.error is not None:
            title += f"\n{attempt.error.kind}: {attempt.error.message}"
        bars.append(
            Bar(
                task_id,
                attempt.attempt,
                attempt.status,
                start,
                end,
                lane,
                title,
                attempt.status == "timed_out",
                attempt.elapsed_ms,
                _ms(attempt.timed_out_at, origin) if attempt.timed_out_at else None,
            )
        )
    return bars


def timeline_html(result: RunResult, bars: list[Bar] | None = None) -> str:
    """Return the self-contained HTML page drawing ``result``."""
    if bars is None:
        bars = place_attempts(result)
    origin = datetime.fromisoformat(result.started_at)
    total = max([result.metrics.duration_ms, *(bar.end_ms for bar in bars), 1.0])
    scale = (WIDTH - LEFT - RIGHT) / total
    lanes = max((bar.lane for bar in bars), default=-1) + 1
    height = TOP + max(lanes, 1) * LANE + 30

    def x(ms: float) -> float:
        return round(LEFT + ms * scale, 2)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{height}" role="img" aria-label="run timeline">'
    ]
    # Lanes and the time axis.
    for lane in range(lanes):
        y = TOP + lane * LANE
        parts.append(
            f'<text x="4" y="{y + BAR - 4}" class="lane">slot {lane + 1}</text>'
            f'<line x1="{LEFT}" y1="{y + BAR + 4}" x2="{WIDTH - RIGHT}" '
            f'y2="{y + BAR + 4}" class="grid"/>'
        )
    axis_y = TOP + max(lanes, 1) * LANE + 14
    for step in range(11):
        ms = total * step / 10
        parts.append(
            f'<text x="{x(ms)}" y="{axis_y}" class="tick">{ms / 1000:.2f}s</text>'
        )

    # Queue waits (thin, under the first attempt) and backoff gaps (dashed,
    # leading into the retry), then the attempts themselves on top.
    first_bar: dict[str, Bar] = {}
    by_task: dict[str, list[Bar]] = {}
    for bar in bars:
        first_bar.setdefault(bar.task_id, bar)
        by_task.setdefault(bar.task_id, []).append(bar)
    for task in result.tasks:
        first = first_bar.get(task.id)
        if first is None or task.queued_at is None:
            continue
        queued = _ms(task.queued_at, origin)
        if first.start_ms - queued > 0:
            queue_y = TOP + first.lane * LANE + BAR + 1
            parts.append(
                f'<rect class="queue" x="{x(queued)}" y="{queue_y}" '
                f'width="{max(x(first.start_ms) - x(queued), 0.5)}" height="2">'
                f"<title>{_e(task.id)} waited {first.start_ms - queued:.1f} ms "
                f"in the queue</title></rect>"
            )
    for task_bars in by_task.values():
        for before, after in itertools.pairwise(task_bars):
            mid = TOP + after.lane * LANE + BAR / 2
            parts.append(
                f'<line class="backoff" x1="{x(before.end_ms)}" y1="{mid}" '
                f'x2="{x(after.start_ms)}" y2="{mid}">'
                f"<title>{_e(after.task_id)} backoff before attempt "
                f"{after.attempt}</title></line>"
            )
    if result.canceled_at is not None:
        # A task canceled while waiting out a backoff: its wait ends at the
        # cancel instant instead of at a next attempt.
        canceled_ms = _ms(result.canceled_at, origin)
        for task in result.tasks:
            waited = by_task.get(task.id)
            if (
                task.status != "canceled"
                or not waited
                or waited[-1].status == "canceled"
            ):
                continue
            last = waited[-1]
            mid = TOP + last.lane * LANE + BAR / 2
            parts.append(
                f'<line class="backoff" x1="{x(last.end_ms)}" y1="{mid}" '
                f'x2="{x(canceled_ms)}" y2="{mid}"><title>{_e(task.id)} '
                f"was waiting to retry when the run was canceled</title></line>"
            )
    for bar in bars:
        y = TOP + bar.lane * LANE
        width = max(x(bar.end_ms) - x(bar.start_ms), 1.0)
        color = COLORS.get(bar.status, "#555")
        parts.append(
            f'<rect class="attempt {_e(bar.status)}" x="{x(bar.start_ms)}" '
            f'y="{y}" width="{width}" height="{BAR}" fill="{color}" rx="2">'
            f"<title>{_e(bar.title)}</title></rect>"
        )
        # Task ids on bars wide enough to hold them (about 6 px a letter).
        if width > 6 * len(bar.task_id) + 8:
            parts.append(
                f'<text class="label" x="{x(bar.start_ms) + 4}" y="{y + BAR - 5}">'
                f"{_e(bar.task_id)}</text>"
            )
        if bar.timed_out:
            # At the deadline itself: a child that ignored SIGTERM keeps
            # its bar going until the kill, past this tick.
            at = x(bar.deadline_ms if bar.deadline_ms is not None else bar.end_ms)
            parts.append(
                f'<line class="timeout" x1="{at}" y1="{y - 3}" '
                f'x2="{at}" y2="{y + BAR + 3}"><title>{_e(bar.task_id)}: '
                f"deadline passed</title></line>"
            )
    if result.canceled_at is not None:
        at = x(_ms(result.canceled_at, origin))
        parts.append(
            f'<line class="cancel" x1="{at}" y1="{TOP - 12}" x2="{at}" '
            f'y2="{TOP + max(lanes, 1) * LANE}"><title>canceled: '
            f"{_e(result.cancel_reason or '')}</title></line>"
            f'<text x="{at + 3}" y="{TOP - 14}" class="cancel-label">canceled</text>'
        )
    parts.append("</svg>")
    return _page(result, "".join(parts))


def _page(result: RunResult, svg: str) -> str:
    rows = []
    for task in result.tasks:
        error = task.error.message if task.error is not None else ""
        rows.append(
            "<tr>"
            f"<td>{_e(task.id)}</td>"
            f'<td class="{_e(task.status)}">{_e(task.status)}</td>'
            f"<td>{len(task.attempts)}</td>"
            f"<td>{_number(task.queue_ms)}</td>"
            f"<td>{_number(task.duration_ms)}</td>"
            f"<td>{_e(task.blocked_by or '')}</td>"
            f"<td>{_e(error)}</td>"
            "</tr>"
        )
    legend = "".join(
        f'<span class="key" style="background:{color}"></span>{_e(name)} '
        for name, color in COLORS.items()
    )
    metrics = result.metrics
    summary = (
        f"{metrics.task_count} tasks, {metrics.completed_count} succeeded, "
        f"mode {result.mode}, concurrency {result.options.concurrency}, "
        f"{metrics.duration_ms / 1000:.2f} s, status {result.status}"
    )
    stopped = f" — stopped: {_e(result.stop_reason)}" if result.stop_reason else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>trt timeline: {_e(result.task_file)}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 20px; color: #222; }}
.lane, .tick, .cancel-label {{ font: 11px system-ui, sans-serif; fill: #555; }}
.grid {{ stroke: #eee; }}
.label {{ font: 11px system-ui, sans-serif; fill: #fff; pointer-events: none; }}
.queue {{ fill: #9db4d6; }}
.backoff {{ stroke: #555; stroke-dasharray: 4 3; }}
.timeout {{ stroke: #000; stroke-width: 2; }}
.cancel {{ stroke: #c00; stroke-width: 2; stroke-dasharray: 6 3; }}
.cancel-label {{ fill: #c00; }}
.key {{ display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 10px; }}
table {{ border-collapse: collapse; margin-top: 16px; }}
td, th {{ border: 1px solid #ddd; padding: 3px 8px; text-align: left; }}
</style></head><body>
<h1>Run of {_e(result.task_file)}</h1>
<p>{_e(summary)}{stopped}</p>
<p>{legend}<span class="key" style="background:#9db4d6"></span>queue wait (thin line
under a bar)</p>
<p>Dashed line: waiting out a backoff before a retry. Black tick: the moment
a deadline passed. Red dashed line: the run was canceled. Hover a bar for
details.</p>
{svg}
<table><thead><tr><th>task</th><th>status</th><th>attempts</th><th>queue ms</th>
<th>duration ms</th><th>blocked by</th><th>error</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
</body></html>
"""


def trace_events(result: RunResult, bars: list[Bar] | None = None) -> dict[str, Any]:
    """Return the run in the Chrome Trace Event format (times in µs)."""
    events: list[dict[str, Any]] = []
    if bars is None:
        bars = place_attempts(result)
    for lane in sorted({bar.lane for bar in bars}):
        events.append(
            {
                "name": "thread_name",
                "ph": "M",
                "pid": 1,
                "tid": lane + 1,
                "args": {"name": f"slot {lane + 1}"},
            }
        )
    for bar in bars:
        events.append(
            {
                "name": f"{bar.task_id} #{bar.attempt}",
                "cat": bar.status,
                "ph": "X",
                "ts": round(bar.start_ms * 1000, 1),
                # The monotonic duration: wall-clock stamps have only
                # millisecond resolution.
                "dur": round(bar.elapsed_ms * 1000, 1),
                "pid": 1,
                "tid": bar.lane + 1,
                "args": {
                    "task": bar.task_id,
                    "attempt": bar.attempt,
                    "status": bar.status,
                    "detail": bar.title,
                },
            }
        )
    if result.canceled_at is not None:
        origin = datetime.fromisoformat(result.started_at)
        events.append(
            {
                "name": "canceled",
                "ph": "i",
                "s": "g",
                "ts": round(_ms(result.canceled_at, origin) * 1000, 1),
                "pid": 1,
                "tid": 1,
                "args": {"reason": result.cancel_reason},
            }
        )
    return {"traceEvents": events, "displayTimeUnit": "ms"}


def write_timeline(result: RunResult, reports_dir: str | Path) -> tuple[Path, Path]:
    """Write timeline.html and trace.json atomically; return their paths."""
    folder = Path(reports_dir)
    page = folder / "timeline.html"
    trace = folder / "trace.json"
    bars = place_attempts(result)
    write_atomic(page, timeline_html(result, bars).encode("utf-8", "backslashreplace"))
    write_atomic(trace, encode_json(trace_events(result, bars)) + b"\n")
    return page, trace


def _e(text: str) -> str:
    """Escape for HTML; control characters become visible escapes."""
    # Most strings (ids, statuses) need nothing: one search says so.
    if _SPECIAL.search(text) is None:
        return text
    return html.escape(_CONTROL.sub(_show_control, text), quote=True)


_SPECIAL = re.compile(r"[<>&\"'\x00-\x08\x0b-\x1f\x7f]")


# C0 controls but tab and newline, and DEL: never meant for a page.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _show_control(found: re.Match[str]) -> str:
    return f"\\x{ord(found.group()):02x}"


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"
