"""core.logs: every record is redacted with the process's registry and the patterns, whatever part of the
record carries the secret: the message, its %-args, extra fields, the traceback."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from core import logs
from core.redact import MASK, REDACTOR
from tests.leaks import LEAKS, OPENBAO_TOKEN, known_secret
from workers.kube import KubeGateway

SOURCE = ("secret", "test-logs", "plate-prod", "app-credentials")


@pytest.fixture
def records() -> Iterator[io.StringIO]:
    from core.redact import secret_values

    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logs.configure("DEBUG", stream=stream)
    REDACTOR.set(SOURCE, secret_values(known_secret("plate-prod")))
    try:
        yield stream
    finally:
        REDACTOR.remove(SOURCE)
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_message_args_extra_and_traceback_are_redacted(records: io.StringIO) -> None:
    log = logging.getLogger("plate.watch")
    log.info("incident %s", "opened", extra={"incident": "prod:web", "detail": f"token {OPENBAO_TOKEN} rejected"})
    log.warning("helm said: %s", "Error: --set db.password=hunter2Secret5")
    try:
        raise RuntimeError(f"connect redis://:Rd5s3cretPw9@redis:6379 with {OPENBAO_TOKEN}")
    except RuntimeError:
        log.exception("job crashed", extra={"error_id": "abc123"})
    with logs.bind(request_id="r1", user="U0BOB"):
        log.info("corpus %s", " | ".join(leak.text for leak in LEAKS))
    text = records.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["detail"] == f"token {MASK} rejected" and lines[0]["message"] == "incident opened"
    assert lines[1]["message"] == f"helm said: Error: --set db.password={MASK}"
    assert "RuntimeError" in lines[2]["exc_info"] and MASK in lines[2]["exc_info"]
    assert lines[3]["request_id"] == "r1"
    for leak in LEAKS:
        assert leak.secret not in text, leak.shape


def test_a_forbidden_secret_list_is_logged_once_without_values(caplog: pytest.LogCaptureFixture) -> None:
    from workers import kube
    from workers.errors import KubeError

    kube._warned.discard(("ctx-x", "ns-x"))
    with caplog.at_level(logging.WARNING, logger="plate.kube"):
        for _ in range(3):
            kube._warn_once("ctx-x", "ns-x", KubeError("Kubernetes refused to list secrets in ns-x (403 Forbidden)"))
    assert len(caplog.records) == 1 and "patterns still apply" in caplog.records[0].getMessage()
    assert KubeGateway.__name__  # the adapter module is what logs it


def test_lines_carry_utc_iso_time_and_numbers_as_numbers(records: io.StringIO) -> None:
    import re
    import time

    logging.getLogger("plate.worker").warning("slow", extra={"seconds": 1.5, "port": 9102, "ok": True})
    line = json.loads(records.getvalue().splitlines()[-1])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"]), line
    stamp = time.mktime(time.strptime(line["time"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert abs(stamp - time.time()) < 60  # UTC, not the machine's zone
    assert (line["seconds"], line["port"], line["ok"], line["level"]) == (1.5, 9102, True, "WARNING")
