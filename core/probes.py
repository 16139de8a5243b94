"""`/metrics` and `/healthz` for the processes that have no Slack HTTP app: `worker` and `watch`.

A stdlib HTTP server on a daemon thread of the main process. For the worker that is the RQ parent, which
lives as long as the worker does; the job metrics it shows come from Redis (see core.metrics), since each
job runs in a forked work-horse whose own counters die with it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from core.metrics import METRICS

log = logging.getLogger("plate.probes")


class ProbeServer:
    def __init__(self, host: str, port: int, healthy: Callable[[], bool] = lambda: True) -> None:
        probe = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass  # scrapes every few seconds would drown the logs

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, "text/plain; version=0.0.4", METRICS.render())
                elif path == "/healthz":
                    ok = probe.healthy()
                    self._send(200 if ok else 503, "application/json", json.dumps({"ok": ok}).encode())
                else:
                    self._send(404, "application/json", b'{"error": "not found"}')

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.healthy = healthy
        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="plate-probes", daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> ProbeServer:
        self._thread.start()
        log.info("metrics and health on port %s", self.port)
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
