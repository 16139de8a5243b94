"""workers.describe.last_state_line (issue 14): a container's last termination as `kubectl describe` shows
it, for `/plate diagnose` and the watcher's diagnosis threads."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from core.redact import REDACTOR
from workers.describe import last_state_line, last_state_lines, signal_name

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z
SHAPELESS = "q7Vx2mKp9LzR4tWn"  # a value with no tell-tale shape: only its registered value can cut it


def iso(seconds_ago: float) -> str:
    return datetime.fromtimestamp(NOW - seconds_ago, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(name: str = "web", **terminated: Any) -> dict[str, Any]:
    cs: dict[str, Any] = {"name": name, "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
    if terminated:
        cs["lastState"] = {"terminated": terminated}
    return cs


@pytest.fixture
def registered() -> Iterator[None]:
    source = ("test", "last-state")
    REDACTOR.set(source, [SHAPELESS])
    try:
        yield
    finally:
        REDACTOR.remove(source)


def test_reason_exit_code_and_when_it_finished() -> None:
    line = last_state_line(status(reason="Error", exitCode=1, finishedAt=iso(120)), NOW)
    assert line == (
        "↳ `web` Last State: Terminated, Reason: Error, Exit Code: 1, finished 2m ago (2023-11-14T22:11:20Z)"
    )


def test_exit_code_137_names_sigkill_and_keeps_the_reason_as_given() -> None:
    line = last_state_line(status(reason="OOMKilled", exitCode=137, finishedAt=iso(30)), NOW)
    assert line is not None
    assert "Reason: OOMKilled, Exit Code: 137 (SIGKILL), finished 30s ago" in line


def test_exit_code_143_names_sigterm() -> None:
    line = last_state_line(status(reason="Error", exitCode=143, finishedAt=iso(7200)), NOW)
    assert line is not None and "Exit Code: 143 (SIGTERM), finished 2h ago" in line


@pytest.mark.parametrize("code", [200, 255])  # 128+72, 128+127: no signal of that number
def test_an_unknown_signal_number_is_not_named(code: int) -> None:
    line = last_state_line(status(reason="Error", exitCode=code), NOW)
    assert line == f"↳ `web` Last State: Terminated, Reason: Error, Exit Code: {code}"
    assert signal_name(code - 128) is None and signal_name(9) == "SIGKILL"


def test_exit_codes_up_to_128_name_no_signal() -> None:
    assert last_state_line(status(exitCode=128), NOW) == "↳ `web` Last State: Terminated, Exit Code: 128"
    assert last_state_line(status(exitCode=2), NOW) == "↳ `web` Last State: Terminated, Exit Code: 2"


def test_the_signal_field_when_the_exit_code_does_not_say_it() -> None:
    line = last_state_line(status(reason="Error", exitCode=1, signal=15), NOW)
    assert line == "↳ `web` Last State: Terminated, Reason: Error, Exit Code: 1, Signal: 15 (SIGTERM)"
    same = last_state_line(status(exitCode=137, signal=9), NOW)
    assert same == "↳ `web` Last State: Terminated, Exit Code: 137 (SIGKILL)"  # not twice


def test_no_last_state_adds_nothing() -> None:
    assert last_state_line(status(), NOW) is None
    assert last_state_line({"name": "web", "lastState": {}}, NOW) is None
    assert last_state_line({"name": "web", "lastState": {"running": {"startedAt": iso(5)}}}, NOW) is None
    pod = {"status": {"containerStatuses": [status()], "initContainerStatuses": [status("migrate")]}}
    assert last_state_lines(pod, NOW) == []
    assert last_state_lines({}, NOW) == []


def test_an_unreadable_finish_time_and_odd_values_do_not_break_the_line() -> None:
    line = last_state_line(status(reason="Error", exitCode="x", finishedAt="yesterday"), NOW)
    assert line == "↳ `web` Last State: Terminated, Reason: Error, finished ?"


def test_the_message_is_redacted_and_clipped(registered: None) -> None:
    message = f"panic: cannot connect: password={SHAPELESS}x and key {SHAPELESS}\n" + "at main.go:12 " * 40
    line = last_state_line(status(reason="Error", exitCode=2, message=message), NOW)
    assert line is not None and SHAPELESS not in line and "[REDACTED]" in line
    assert line.startswith("↳ `web` Last State: Terminated, Reason: Error, Exit Code: 2, Message: panic: ")
    assert "\n" not in line and len(line.split("Message: ")[1]) <= 160


def test_init_containers_first_then_app_containers() -> None:
    pod = {
        "status": {
            "initContainerStatuses": [status("migrate", reason="Error", exitCode=3, finishedAt=iso(60))],
            "containerStatuses": [status("web"), status("sidecar", reason="Completed", exitCode=0)],
        }
    }
    assert last_state_lines(pod, NOW) == [
        "↳ init container `migrate` Last State: Terminated, Reason: Error, Exit Code: 3, finished 1m ago "
        "(2023-11-14T22:12:20Z)",
        "↳ `sidecar` Last State: Terminated, Reason: Completed, Exit Code: 0",
    ]
