"""The floor of the ack-latency benchmark: a bare Bolt app on the same server stack as plate-bot serve
(waitress, 8 threads, Bolt's WSGI adapter, the same signing check) whose /plate and button handlers
only ack.
`python bench/_floor_app.py PORT SLACK_API_URL SIGNING_SECRET`."""

from __future__ import annotations

import re
import sys

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from waitress.server import create_server


def main() -> None:
    port, api_url, secret = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    app = App(
        signing_secret=secret, client=WebClient(token="xoxb-floor", base_url=api_url), process_before_response=False
    )

    @app.command("/plate")
    def only_ack(ack) -> None:
        ack()

    @app.action(re.compile(".*"))
    def only_ack_click(ack) -> None:
        ack()

    bolt = SlackRequestHandler(app)

    def wsgi(environ, start_response):
        if environ.get("PATH_INFO") == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
            return [b"ok"]
        return bolt(environ, start_response)

    create_server(wsgi, host="127.0.0.1", port=port, threads=8, ident="floor").run()


if __name__ == "__main__":
    main()
