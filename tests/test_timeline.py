"""The run's picture: timeline.html and trace.json, checked as files and in
a real headless browser (Debian's chromium) by looking at its pixels."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import trt
from tests.conftest import TASKS, WriteTasks, run_cli
from trt._timeline import COLORS, place_attempts

FIXTURE_RUNS = {
    "timeouts": ["--concurrency", "3", "--timeout", "500", "--kill-grace", "300"],
    "flaky": ["--concurrency", "2"],
    "cancel-after": ["--concurrency", "2", "--cancel-after", "250"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Run each fixture once; return its reports folder."""
    folders = {}
    for name, flags in FIXTURE_RUNS.items():
        folder = tmp_path_factory.mktemp(name)
        # Its own working folder too: a module's fixture runs before the
        # per-test one that gives each test's trt processes theirs.
        run_cli(
            "run",
            str(TASKS / f"{name}.json"),
            *flags,
            "--reports-dir",
            str(folder),
            cwd=folder,
        )
        folders[name] = folder
    return folders


def load_result(folder: Path) -> trt.RunResult:
    import msgspec

    return msgspec.json.decode(
        (folder / "latest.json").read_bytes(), type=trt.RunResult
    )


@pytest.mark.parametrize("name", sorted(FIXTURE_RUNS))
def test_lanes_never_overlap_nor_exceed_the_limit(
    runs: dict[str, Path], name: str
) -> None:
    result = load_result(runs[name])

    bars = place_attempts(result)

    assert len(bars) == sum(len(task.attempts) for task in result.tasks)
    assert max(bar.lane for bar in bars) < result.options.concurrency
    for lane in {bar.lane for bar in bars}:
        spans = sorted((b.start_ms, b.end_ms) for b in bars if b.lane == lane)
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end <= start


@pytest.mark.parametrize("name", sorted(FIXTURE_RUNS))
def test_trace_is_valid_chrome_trace(runs: dict[str, Path], name: str) -> None:
    trace: dict[str, Any] = json.loads((runs[name] / "trace.json").read_text())
    result = load_result(runs[name])

    spans = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert len(spans) == sum(len(task.attempts) for task in result.tasks)
    assert all(e["ts"] >= 0 and e["dur"] >= 0 for e in spans)
    assert {e["ph"] for e in trace["traceEvents"]} <= {"X", "M", "i"}
    instants = [e for e in trace["traceEvents"] if e["ph"] == "i"]
    assert len(instants) == (1 if name == "cancel-after" else 0)


def test_timeline_marks_timeouts_retries_and_cancel(runs: dict[str, Path]) -> None:
    timeouts = (runs["timeouts"] / "timeline.html").read_text()
    flaky = (runs["flaky"] / "timeline.html").read_text()
    canceled = (runs["cancel-after"] / "timeline.html").read_text()

    assert timeouts.count('class="attempt timed_out"') == 5
    assert timeouts.count('class="timeout"') == 5
    assert flaky.count('class="backoff"') == 5
    assert 'class="cancel"' in canceled
    assert canceled.count('class="attempt canceled"') == 2
    for page in (timeouts, flaky, canceled):
        assert "http" not in page.replace("http://www.w3.org/2000/svg", "")


def test_text_from_the_run_is_escaped(write_tasks: WriteTasks, tmp_path: Path) -> None:
    (tmp_path / "evil.py").write_text(
        "def f(context):\n    raise ValueError('<script>alert(1)</script>\\x1b[31m')\n"
    )
    path = write_tasks(
        {"id": "x", "type": "function", "module": "evil.py", "export": "f"}
    )

    run_cli("run", str(path), "--reports-dir", str(tmp_path / "r"))
    page = (tmp_path / "r" / "timeline.html").read_text()

    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "\x1b" not in page
    assert "\\x1b[31m" in page


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and os.environ.get("TRT_REQUIRE_BROWSER") == "1":
        pytest.fail("TRT_REQUIRE_BROWSER=1 but no chromium on PATH")
    return found


def _rgb(color: str) -> tuple[int, int, int]:
    return (int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16))


def test_browser_draws_the_bars(runs: dict[str, Path], tmp_path: Path) -> None:
    """Screenshot the page in headless chromium and find the bar colours."""
    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (CI installs it)")
    from PIL import Image

    shot = tmp_path / "timeline.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1100,700",
            (runs["timeouts"] / "timeline.html").as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )

    image = Image.open(shot).convert("RGB")
    counts: dict[tuple[int, int, int], int] = {}
    for pixel in image.get_flattened_data():
        counts[pixel] = counts.get(pixel, 0) + 1
    # Five timed-out bars of at least ~150 px by 18 px, one success bar.
    assert counts.get(_rgb(COLORS["timed_out"]), 0) > 5 * 18 * 100
    assert counts.get(_rgb(COLORS["success"]), 0) > 18 * 20
