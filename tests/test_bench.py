"""trt bench: ideal times, target checks, the reports, and a quick run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from trt._bench import (
    BenchReport,
    ScenarioResult,
    dag_tasks,
    delay_tasks,
    file_order_ms,
    ideal_ms,
    mixed_tasks,
    scenarios,
)
from trt._bench_report import chart, check_targets, markdown


class TestIdeal:
    def test_independent_delays_are_bounded_by_sum_and_longest(self) -> None:
        tasks = delay_tasks(8)  # 0.05, 0.1, 0.15, 0.2 twice: 1.0 s in all

        assert ideal_ms({"tasks": tasks, "concurrency": 1}) == 1000.0
        assert ideal_ms({"tasks": tasks, "concurrency": 5}) == 200.0
        assert ideal_ms({"tasks": tasks, "concurrency": 20}) == 200.0

    def test_a_timeout_cuts_the_delays(self) -> None:
        tasks = delay_tasks(4)

        ideal = ideal_ms({"tasks": tasks, "concurrency": 1, "timeout_ms": 100})

        assert ideal == pytest.approx(50 + 100 + 100 + 100)

    @pytest.mark.parametrize(
        ("mode", "settles_ms"),
        # At concurrency 3 in file order: ok-300 [0-300], fail-200 [0-200],
        # ok-100 [0-100], then ok-400 [100-500], fail-50 [200-250],
        # ok-250 [250-500].
        [("allSettled", 500.0), ("all", 200.0), ("race", 100.0), ("any", 100.0)],
    )
    def test_modes_settle_at_their_first_deciding_task(
        self, mode: str, settles_ms: float
    ) -> None:
        scenario = {"tasks": mixed_tasks(), "concurrency": 3, "mode": mode}

        assert ideal_ms(scenario) == settles_ms

    def test_file_order_packs_worse_than_the_ideal(self) -> None:
        # 0.05, 0.1, 0.15, 0.2 twice at concurrency 5, started in file
        # order: the first five start at once; the 0.1 and 0.15 take the
        # slots freed at 0.05 s, and the last 0.2 the one freed at 0.1 s,
        # so the mix needs 0.3 s where perfect packing needs 0.2 s.
        scenario = {"tasks": delay_tasks(8), "concurrency": 5}

        assert ideal_ms(scenario) == 200.0
        assert file_order_ms(scenario) == 300.0
        assert file_order_ms({**scenario, "mode": "race"}) is None
        assert file_order_ms({"tasks": dag_tasks(2, 2, 1), "concurrency": 2}) is None

    def test_the_dag_has_its_edges_and_no_waiting_of_its_own(self) -> None:
        tasks = dag_tasks(layers=10, width=100, fan_in=11)

        assert len(tasks) == 1000
        assert sum(len(task["dependsOn"]) for task in tasks) == 9900
        assert ideal_ms({"tasks": tasks, "concurrency": 64}) == 0.0


def test_scenarios_cover_every_group_the_issue_names() -> None:
    found = scenarios(quick=False)
    names = {scenario["name"] for scenario in found}

    assert {"concurrency-1", "concurrency-5", "concurrency-20"} <= names
    assert {"no-timeout", "timeout-120ms", "retries-off", "retries-on"} <= names
    assert {f"mode-{m}" for m in ("allSettled", "all", "race", "any")} <= names
    assert {"spawn-1000-true", "noop-10000-functions", "dag-1000-nodes"} <= names


def result(name: str, **fields: object) -> ScenarioResult:
    base: dict[str, object] = {
        "group": "scale",
        "name": name,
        "description": name,
        "task_count": 1000,
        "concurrency": 8,
    }
    base.update(fields)
    return ScenarioResult(**base)  # type: ignore[arg-type]


def test_targets_compare_each_figure_with_its_limit() -> None:
    results = [
        result("noop-10000-functions", per_task_us=29.0, task_count=10000),
        result("spawn-1000-true", ratios={"xargs": 1.2}),
        result("one-hundred-delays", group="delays", ratios={"bareTrioLoop": 1.005}),
        result("dag-1000-nodes", duration_ms=61.0, ideal_ms=0.0),
    ]

    targets = {t.unit: (t.measured, t.met) for t in check_targets(results)}

    assert targets == {
        "µs per task": (29.0, True),
        "x xargs": (1.2, False),
        "x bare loop": (1.005, True),
        "ms": (61.0, False),
    }


def test_the_markdown_and_the_chart_come_from_the_same_results() -> None:
    results = [
        result(
            "concurrency-1",
            group="concurrency",
            duration_ms=3000.0,
            ideal_ms=2900.0,
            baselines_ms={"bareTrioLoop": 2950.0},
            ratios={"ideal": 1.034, "bareTrioLoop": 1.017},
        ),
        result("concurrency-20", group="concurrency", duration_ms=300.0),
    ]
    report = BenchReport(
        command="trt bench",
        quick=True,
        started_at="2026-01-01T00:00:00.000+00:00",
        seconds=12.0,
        python="3.11",
        trio="0.x",
        msgspec="0.y",
        platform="Linux",
        cpu_count=2,
        scenarios=results,
        targets=[],
    )

    text = markdown(report)
    svg = chart(results)

    assert "| concurrency-1 | 1000 | 8 | 3,000.0 | 2,900.0 | 1.03x |" in text
    assert "Concurrency 8 wins: 300.0 ms against 3,000.0 ms" in text
    assert "10.0x faster" in text
    assert "concurrency-1 vs bareTrioLoop" in svg
    assert ">1.02x<" in svg


def test_quick_bench_writes_both_reports(tmp_path: Path) -> None:
    done = run_cli("bench", "--quick", "--reports-dir", str(tmp_path), timeout=120)

    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["quick"] is True
    fields = {
        "durationMs",
        "throughputPerSecond",
        "successCount",
        "failedCount",
        "timedOutCount",
        "canceledCount",
        "retryCount",
        "queueMsAvg",
        "queueMsP95",
        "maxActive",
    }
    for scenario in data["scenarios"]:
        assert fields <= set(scenario), scenario["name"]
    by_name = {s["name"]: s for s in data["scenarios"]}
    assert by_name["retries-on"]["retryCount"] > 0
    assert by_name["retries-off"]["failedCount"] > 0
    assert by_name["timeout-120ms"]["timedOutCount"] > 0
    assert by_name["mode-race"]["durationMs"] < by_name["mode-allSettled"]["durationMs"]
    assert "xargs" in by_name["spawn-300-true"]["baselinesMs"]
    text = (tmp_path / "task-runtime.md").read_text()
    assert "## Targets" in text
    assert (tmp_path / "task-runtime.svg").read_text().startswith("<svg")
    assert "trt bench: 15 scenarios" in done.stdout
    # A quick run's figures are not judged against the full run's targets.
    assert "these verdicts only indicate" in done.stdout
    assert "these verdicts only indicate" in text
    assert "MISSED" not in done.stdout
