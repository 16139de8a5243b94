"""core.probes: the one /metrics + /healthz + /readyz app of serve, worker and watch, and its server."""

from __future__ import annotations

import json
import socket
import urllib.request
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from core.probes import Check, Health, ProbeServer, probes_app


def call(app: Any, path: str, method: str = "GET") -> tuple[str, dict[str, str], bytes]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    environ = {"PATH_INFO": path, "REQUEST_METHOD": method, "QUERY_STRING": ""}
    body = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], body


@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("plate_probe_test_total", "a counter", registry=registry).inc()
    return registry


def test_metrics_is_prometheus_exposition_of_the_registry(registry: CollectorRegistry) -> None:
    status, headers, body = call(probes_app(registry, live=Health()), "/metrics")
    assert status == "200 OK" and headers["Content-Type"] == CONTENT_TYPE_PLAIN_0_0_4
    assert b"plate_probe_test_total 1.0" in body


def test_health_answers_by_check_and_readyz_only_where_given(registry: CollectorRegistry) -> None:
    state = {"redis": True, "draining": False}
    ready = Health(
        [Check("redis", lambda: state["redis"]), Check("draining", lambda: state["draining"], expect=False)],
        summary=False,
    )
    app = probes_app(registry, live=Health(), ready=ready)
    assert call(app, "/healthz")[::2] == ("200 OK", b'{"ok": true}')
    assert call(app, "/readyz")[::2] == ("200 OK", b'{"redis": true, "draining": false}')
    state["draining"] = True
    assert call(app, "/readyz")[::2] == ("503 Service Unavailable", b'{"redis": true, "draining": true}')
    assert call(app, "/nothing")[::2] == ("404 Not Found", b'{"error": "not found"}')
    assert call(probes_app(registry, live=Health()), "/readyz")[0] == "404 Not Found"  # no readiness: no /readyz


def test_reported_fields_are_not_judged_and_a_raising_check_fails(registry: CollectorRegistry) -> None:
    def broken() -> bool:
        raise ConnectionError("Redis away")

    live = Health([Check("leader", lambda: False, expect=None), Check("holder", lambda: "w-1", expect=None)])
    status, _h, body = call(probes_app(registry, live=live), "/healthz")
    assert status == "200 OK" and json.loads(body) == {"ok": True, "leader": False, "holder": "w-1"}
    failing = Health([Check("redis", broken), Check("heartbeat", lambda: True)])
    status, _h, body = call(probes_app(registry, live=failing), "/healthz")
    assert status == "503 Service Unavailable" and json.loads(body) == {"ok": False, "redis": None, "heartbeat": True}


def test_probe_server_serves_on_a_thread_stops_and_refuses_a_taken_port(registry: CollectorRegistry) -> None:
    server = ProbeServer("127.0.0.1", 0, probes_app(registry, live=Health())).start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5) as resp:
            assert resp.status == 200 and json.loads(resp.read()) == {"ok": True}
        with pytest.raises(OSError):
            ProbeServer("127.0.0.1", server.port, probes_app(registry, live=Health()))
    finally:
        server.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=2):
        pass  # closed: nothing listens any more
