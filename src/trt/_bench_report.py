"""The benchmark's reports: bench.json, task-runtime.md and its chart.

All three are written from the same ScenarioResult objects, so the prose
and the numbers cannot disagree.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Final

import msgspec

from trt._bench import BenchReport, ScenarioResult, Target
from trt._util import write_atomic

if TYPE_CHECKING:
    from collections.abc import Iterable

# The targets: (name, limit, unit).
NOOP_US: Final = 30.0
SPAWN_VS_XARGS: Final = 1.1
DELAYS_VS_BARE: Final = 1.01
DAG_MS: Final = 50.0


# The targets are set for the full sizes; a quick run's smaller scenarios
# spread the fixed costs (the first and last snapshot) over fewer tasks.
QUICK_CAVEAT: Final = (
    "A quick run: smaller scenarios, one round each. The targets are set for "
    "the full run (`trt bench`), so these verdicts only indicate."
)


def _verdict(target: Target, quick: bool) -> str:
    if quick:
        return "under" if target.met else "over"
    return "yes" if target.met else "**no**"


def measured(target: Target) -> str:
    """The target's measured value with its unit: ratios to 3 decimals."""
    if target.unit.startswith("x "):
        return f"{target.measured:.3f} {target.unit}"
    return f"{target.measured:g} {target.unit}"


def _find(results: Iterable[ScenarioResult], prefix: str) -> ScenarioResult | None:
    return next((r for r in results if r.name.startswith(prefix)), None)


def check_targets(results: list[ScenarioResult]) -> list[Target]:
    """Compare the scale and headline scenarios with the issue's targets."""
    targets = []
    noop = _find(results, "noop-")
    if noop is not None and noop.per_task_us is not None:
        targets.append(
            Target(
                name=f"{noop.task_count} no-op functions, events and state on",
                measured=noop.per_task_us,
                limit=NOOP_US,
                unit="µs per task",
                met=noop.per_task_us <= NOOP_US,
            )
        )
    spawn = _find(results, "spawn-")
    if spawn is not None and "xargs" in spawn.ratios:
        ratio = spawn.ratios["xargs"]
        targets.append(
            Target(
                name=f"{spawn.task_count} x true at concurrency 8 vs xargs -P 8",
                measured=ratio,
                limit=SPAWN_VS_XARGS,
                unit="x xargs",
                met=ratio <= SPAWN_VS_XARGS,
            )
        )
    delays = _find(results, "one-hundred-delays")
    if delays is not None and "bareTrioLoop" in delays.ratios:
        ratio = delays.ratios["bareTrioLoop"]
        targets.append(
            Target(
                name="100 x 100 ms at concurrency 5 vs bare Trio loop, start-up in",
                measured=ratio,
                limit=DELAYS_VS_BARE,
                unit="x bare loop",
                met=ratio <= DELAYS_VS_BARE,
            )
        )
    dag = _find(results, "dag-")
    if dag is not None:
        overhead = dag.duration_ms - (dag.ideal_ms or 0.0)
        targets.append(
            Target(
                name=f"{dag.description}: scheduling overhead",
                measured=round(overhead, 1),
                limit=DAG_MS,
                unit="ms",
                met=overhead <= DAG_MS,
            )
        )
    return targets


def write_reports(report: BenchReport, reports_dir: Path) -> None:
    """Write bench.json, task-runtime.md and task-runtime.svg."""
    data = msgspec.json.format(msgspec.json.encode(report), indent=2)
    write_atomic(reports_dir / "bench.json", data + b"\n")
    write_atomic(reports_dir / "task-runtime.svg", chart(report.scenarios).encode())
    write_atomic(reports_dir / "task-runtime.md", markdown(report).encode())


# -- Markdown -------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def markdown(report: BenchReport) -> str:
    """Return task-runtime.md: setup, one table per group, what it means."""
    groups: dict[str, list[ScenarioResult]] = {}
    for result in report.scenarios:
        groups.setdefault(result.group, []).append(result)
    size = "quick" if report.quick else "full"
    lines = [
        "# trt: task runtime benchmark",
        "",
        f"`{report.command}` ({size} run, {report.seconds:.0f} s, started "
        f"{report.started_at}) on Python {report.python}, Trio {report.trio}, "
        f"msgspec {report.msgspec}, {report.platform}, {report.cpu_count} CPUs.",
        "",
        "Every scenario runs in a fresh interpreter through trt's Runtime with "
        "state kept on disk and an event listener attached, as `trt run` has "
        "them; its baselines run right after it on the same machine. Times are "
        "wall-clock from the run's start to its end (start-up excluded, except "
        "in the one-hundred-delays row, which times whole processes).",
        "",
        "## Targets",
        "",
    ]
    if report.quick:
        lines += [QUICK_CAVEAT, ""]
    lines += [
        "| target | measured | limit | met |",
        "|---|---|---|---|",
    ]
    for target in report.targets:
        lines.append(
            f"| {target.name} | {measured(target)} | "
            f"≤ {target.limit:g} | {_verdict(target, report.quick)} |"
        )
    lines += ["", "![trt against its references](task-runtime.svg)", ""]
    for group, results in groups.items():
        lines += _group_section(group, results)
    return "\n".join(lines) + "\n"


def _group_section(group: str, results: list[ScenarioResult]) -> list[str]:
    title = {
        "concurrency": "Concurrency 1, 5 and 20",
        "timeouts": "No timeout against a short timeout",
        "retries": "Retries off against on",
        "modes": "The four modes over one mixed file",
        "scale": "Scale",
        "delays": "The main job, start-up included",
    }.get(group, group)
    lines = [f"## {title}", "", f"Task mix: {results[0].description}.", ""]
    lines += [
        "| scenario | tasks | conc. | duration ms | ideal ms | x ideal | "
        "references (ms) | x reference | tasks/s | ok | failed | timed out | "
        "canceled | retries | queue avg / p95 ms | max active | µs/task | "
        "peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        refs = ", ".join(f"{k} {v:,.1f}" for k, v in r.baselines_ms.items()) or "-"
        ratios = ", ".join(f"{k} {v:.2f}x" for k, v in r.ratios.items() if k != "ideal")
        lines.append(
            f"| {r.name} | {r.task_count} | {r.concurrency} | {_ms(r.duration_ms)} | "
            f"{_ms(r.ideal_ms)} | {_x(r.ratios.get('ideal'))} | {refs} | "
            f"{ratios or '-'} | {r.throughput_per_second:,.1f} | {r.success_count} | "
            f"{r.failed_count} | {r.timed_out_count} | {r.canceled_count} | "
            f"{r.retry_count} | {_ms(r.queue_ms_avg)} / {_ms(r.queue_ms_p95)} | "
            f"{r.max_active} | {_ms(r.per_task_us)} | {_ms(r.peak_rss_mb)} |"
        )
    lines += ["", _interpret(group, results), ""]
    return lines


def _order_note(results: list[ScenarioResult]) -> str:
    """Say how much of the gap to the ideal is the file order's."""
    worst = max(results, key=lambda r: r.ratios.get("ideal", 0.0))
    order = worst.baselines_ms.get("fileOrder")
    if not order or not worst.ideal_ms or order <= worst.ideal_ms:
        return ""
    return (
        f" The ideal assumes perfect packing; started in file order, as trt "
        f"promises, the mix needs {_ms(order)} ms at concurrency "
        f"{worst.concurrency} (ideal {_ms(worst.ideal_ms)} ms), and trt takes "
        f"{worst.ratios.get('fileOrder', 0.0):.2f}x that. The bare loop starts "
        "its tasks in whatever order Trio runs them, so its time moves from "
        "round to round with that order."
    )


def _against_bare(result: ScenarioResult, what: str) -> str:
    ratio = result.ratios.get("bareTrioLoop")
    if ratio is None:
        return ""
    return f" The bare Trio loop with {what} takes {1 / ratio:.2f}x trt's time."


def _interpret(group: str, results: list[ScenarioResult]) -> str:
    """A few sentences on what the numbers of one group say."""
    by_name = {r.name: r for r in results}
    if group == "concurrency":
        slow, fast = results[0], results[-1]
        speedup = slow.duration_ms / fast.duration_ms if fast.duration_ms else 0
        return (
            f"Concurrency {fast.concurrency} wins: {_ms(fast.duration_ms)} ms "
            f"against {_ms(slow.duration_ms)} ms at concurrency "
            f"{slow.concurrency}, {speedup:.1f}x faster. The children do the "
            "waiting, so time falls with the slot count until the mix runs out "
            f"of tasks: at {fast.concurrency} slots the longest sleep bounds "
            f"the run (ideal {_ms(fast.ideal_ms)} ms), and queue waits drop "
            f"from {_ms(slow.queue_ms_avg)} ms to {_ms(fast.queue_ms_avg)} ms on "
            f"average.{_order_note(results)}"
        )
    if group == "timeouts":
        plain, short = results[0], results[-1]
        return (
            f"The short timeout cuts {short.timed_out_count} of "
            f"{short.task_count} tasks off and so finishes sooner "
            f"({_ms(short.duration_ms)} ms against {_ms(plain.duration_ms)} ms), "
            "at the price of those tasks' work: each timed-out group gets "
            "SIGTERM, and the attempt ends only once the process is gone."
            + _against_bare(short, "the same deadlines")
        )
    if group == "retries":
        off, on = by_name.get("retries-off"), by_name.get("retries-on")
        if off is None or on is None:
            return ""
        return (
            f"Without retries {off.failed_count} of {off.task_count} tasks fail; "
            f"with them every task succeeds after {on.retry_count} retries, for "
            f"{_ms(on.duration_ms - off.duration_ms)} ms more. Backoff holds no "
            "slot, so retried tasks wait while others run."
        )
    if group == "modes":
        # In the order the file's schedule settles them: modes with the same
        # ideal settle on the same task, and their measured order is noise.
        order = sorted(results, key=lambda r: (r.ideal_ms or 0.0, r.mode))
        settled = ", ".join(
            f"`{r.mode}` {_ms(r.duration_ms)} ms (ideal {_ms(r.ideal_ms)})"
            for r in order
        )
        return (
            f"Settled: {settled}. race stops at the first task to settle, all "
            "at the first failure, any at the first success, and allSettled "
            "waits for every task; where two ideals are equal the modes settle "
            "on the same task. Work still running when a mode settles is "
            "canceled and counted as such."
        )
    if group == "scale":
        parts = []
        for r in results:
            if r.name.startswith("spawn-"):
                xargs = r.ratios.get("xargs")
                bare = r.ratios.get("bareTrioLoop")
                parts.append(
                    f"Spawning {r.task_count} processes costs "
                    f"{_ms(r.per_task_us)} µs each"
                    + (f", {xargs:.2f}x xargs -P (fork and exec, no output "
                       "read, nothing recorded)" if xargs else "")
                    + (f" and {bare:.2f}x the bare Trio loop (run_process per "
                       "job)" if bare else "")
                    + "."
                )  # fmt: skip
            elif r.name.startswith("noop-"):
                bare = r.baselines_ms.get("bareTrioNursery")
                bare_us = bare * 1000 / r.task_count if bare else None
                parts.append(
                    f"{r.task_count} no-op functions cost {_ms(r.per_task_us)} µs "
                    "each with state and events on"
                    + (
                        f", against {bare_us:.1f} µs for a bare nursery task per job"
                        if bare_us
                        else ""
                    )
                    + "; trt runs one worker per slot, not one task per job."
                )
            elif r.name.startswith("dag-"):
                parts.append(
                    f"The DAG ({r.description}) takes {_ms(r.duration_ms)} ms "
                    "in all: every edge is one counter decrement when a task "
                    "succeeds, so scheduling stays linear in the edges."
                )
        return " ".join(parts)
    if group == "delays":
        r = results[0]
        return (
            f"The whole `trt run`, start-up and reports included, takes "
            f"{_ms(r.duration_ms)} ms against the bare loop's "
            f"{_ms(r.baselines_ms.get('bareTrioLoop'))} ms: the children do "
            "the waiting, and trt's bookkeeping fits between their exits."
        )
    return ""


# -- the chart --------------------------------------------------------------------

WIDTH: Final = 760
ROW: Final = 22
LEFT: Final = 210


def chart(results: list[ScenarioResult]) -> str:
    """A plain SVG: trt's time as a multiple of each reference, per scenario.

    One bar per (scenario, reference); the line at 1x is parity. Bars are
    capped at 4x so one slow reference cannot flatten the rest.
    """
    rows = [
        (r.name, reference, ratio)
        for r in results
        for reference, ratio in sorted(r.ratios.items())
    ]
    cap = 4.0
    scale = (WIDTH - LEFT - 60) / cap
    height = 40 + ROW * len(rows) + 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{height}" font-family="sans-serif" font-size="12">',
        '<text x="10" y="20" font-weight="bold">trt time / reference time '
        "(lower is better; 1x = parity)</text>",
    ]
    for index, (name, reference, ratio) in enumerate(rows):
        y = 36 + index * ROW
        width = min(ratio, cap) * scale
        colour = (
            "#2f7d32" if ratio <= 1.05 else "#c77c02" if ratio <= 1.5 else "#b3261e"
        )
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 13}" text-anchor="end">'
            f"{escape(name)} vs {escape(reference)}</text>"
            f'<rect x="{LEFT}" y="{y}" width="{width:.1f}" height="{ROW - 6}" '
            f'fill="{colour}"/>'
            f'<text x="{LEFT + width + 4:.1f}" y="{y + 13}">{ratio:.2f}x</text>'
        )
    one = LEFT + scale
    parts.append(
        f'<line x1="{one:.1f}" y1="28" x2="{one:.1f}" y2="{height - 20}" '
        'stroke="#333" stroke-dasharray="4 3"/>'
        f'<text x="{one:.1f}" y="{height - 6}" text-anchor="middle">1x</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
