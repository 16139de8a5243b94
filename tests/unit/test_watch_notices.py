"""workers.watcher.notices (issue 14) on fakeredis: what the release records' streams bring becomes one
deploy-channel notice per revision plate-bot did not make; nothing for what was there at first sight, for
plate-bot's own revisions, twice, after a restart, or from a watcher that does not lead."""

from __future__ import annotations

import base64
import datetime as dt
import logging
from typing import Any

import fakeredis
import pytest

from config.environments import parse_config
from core.store import Store
from sandbox.helm import release_secret
from workers.watcher.apps import AppIndex
from workers.watcher.incidents import SlackBudget
from workers.watcher.notices import ReleaseNotices
from workers.watcher.store import WatchStore
from workers.watcher.streams import Change, StreamKey, Sync

NOW = 1_800_000_000.0
NS = "plate-prod"
KEY = "prod/plate-prod/plate-api"  # Environment.key of prod's plate-api
SECRETS = StreamKey("plate-prod", "helmsecrets", NS)
CONFIG = parse_config(
    {
        "environments": {
            "prod": {
                "kube_context": "plate-prod",
                "namespace": NS,
                "channels": ["C0DEPLOYS"],
                "apps": {"plate-web": {"chart": "web"}, "plate-api": {"chart": "api"}},
            }
        }
    }
)


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def record(version: int, deployed: float, description: str = "Upgrade complete", status: str = "deployed",
           release: str = "plate-api") -> dict[str, Any]:  # fmt: skip
    secret = release_secret({
        "name": release, "namespace": NS, "version": version,
        "info": {"status": status, "description": description, "first_deployed": iso(NOW - 86400),
                 "last_deployed": iso(deployed)},
        "chart": {"metadata": {"name": release, "version": "0.3.0", "appVersion": f"2.{version}.0"}},
        "config": {}, "manifest": "",
    })  # fmt: skip
    secret["metadata"]["uid"] = f"uid-{release}-{version}"
    return secret


class Slack:
    def __init__(self) -> None:
        self.posts: list[tuple[str, str]] = []

    def post(self, channel: str, text: str, blocks: Any = None, thread_ts: str | None = None) -> str:
        self.posts.append((channel, text))
        return f"{NOW}.{len(self.posts):06d}"


class Harness:
    """One watcher's notices on a shared (fake) Redis; `leading` as its lease says."""

    def __init__(self, server: fakeredis.FakeServer, slack: Slack, holder: str = "w1") -> None:
        conn = fakeredis.FakeRedis(server=server)
        self.store, self.keys, self.slack = Store(conn), WatchStore(conn), slack
        self.notices = ReleaseNotices(
            AppIndex(CONFIG.environments.values()), self.store, self.keys, slack,  # type: ignore[arg-type]
            channel_for=lambda _env: "C0DEPLOYS", holder=holder, grace=5.0, check_every=0.0,
        )  # fmt: skip
        self.budget = SlackBudget(post_interval=0.0)
        self.leading = True

    def listed(self, *records: dict[str, Any], at: float = NOW) -> None:
        self.notices.on_item(Sync(SECRETS, list(records)), at)
        self.run(at)

    def changed(self, obj: dict[str, Any], at: float, etype: str = "ADDED") -> None:
        self.notices.on_item(Change(SECRETS, etype, obj), at)
        self.run(at)

    def run(self, at: float) -> None:
        self.notices.run(at, self.budget, lambda: self.leading)


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


def texts(slack: Slack) -> list[str]:
    return [text for _channel, text in slack.posts]


def test_once_per_outside_revision_nothing_for_history_or_plate_bot(server: fakeredis.FakeServer) -> None:
    slack = Slack()
    w = Harness(server, slack)
    history = [record(n, NOW - 3600 * (4 - n)) for n in (1, 2, 3)]
    w.listed(*history, record(2, NOW - 7200, release="plate-web"))
    assert slack.posts == []  # what was there at first sight is history
    assert w.keys.release_baseline("secret", KEY, 99, NOW + 1) == (3, NOW)  # the first sight, kept

    outside = record(4, NOW + 10)
    w.changed(outside, NOW + 10)
    assert slack.posts == []  # within the grace: plate-bot's record may still come
    w.run(NOW + 16)
    assert slack.posts == [
        ("C0DEPLOYS", "prod/plate-api: helm revision 4 of plate-api made outside plate-bot (deployed)")
    ]
    w.changed({**outside, "metadata": {**outside["metadata"], "labels": {**outside["metadata"]["labels"],
                                                                          "status": "superseded"}}},
              NOW + 20, "MODIFIED")  # fmt: skip
    w.run(NOW + 60)
    assert len(slack.posts) == 1

    # plate-bot's deploy names its request; its rollback was stamped while its job ran (its change record).
    w.changed(record(5, NOW + 30, "plate-bot 0a1b2c3d4e5f by U0BOB"), NOW + 30)
    w.store.save_change(KEY, {"request": "9f8e7d6c5b4a", "requester": "U0BOB", "started": NOW + 39,
                              "ended": None, "deadline": NOW + 700, "outcome": "running"})  # fmt: skip
    w.changed(record(6, NOW + 40, "Rollback to 4"), NOW + 40)
    w.store.save_change(KEY, {"request": "9f8e7d6c5b4a", "requester": "U0BOB", "started": NOW + 39,
                              "ended": NOW + 50, "outcome": "succeeded"})  # fmt: skip
    w.run(NOW + 100)
    assert len(slack.posts) == 1
    assert w.keys.notice(f"{KEY}:{int(NOW - 86400)}:4")["state"] == "posted"  # type: ignore[index]

    # A restart (a new process, same Redis): the list holds everything plus a revision made meanwhile.
    restarted = Harness(server, slack, holder="w2")
    later = record(7, NOW + 200, "Upgrade complete")
    restarted.listed(*history, outside, record(5, NOW + 30, "plate-bot 0a1b2c3d4e5f by U0BOB"),
                     record(6, NOW + 40, "Rollback to 4"), later, at=NOW + 300)  # fmt: skip
    restarted.run(NOW + 306)
    assert texts(slack)[1:] == ["prod/plate-api: helm revision 7 of plate-api made outside plate-bot (deployed)"]
    restarted.run(NOW + 400)
    assert len(slack.posts) == 2


def test_a_change_record_that_lags_is_waited_for(server: fakeredis.FakeServer) -> None:
    slack = Slack()
    w = Harness(server, slack)
    w.listed(record(1, NOW - 600), at=NOW)
    w.changed(record(2, NOW + 1, "Rollback to 1"), NOW + 1)
    w.run(NOW + 3)
    w.store.save_change(KEY, {"request": "9f8e7d6c5b4a", "requester": "U0BOB", "started": NOW,
                              "ended": NOW + 2, "outcome": "succeeded"})  # fmt: skip
    w.run(NOW + 10)
    assert slack.posts == []


def test_pending_revisions_wait_for_helm_and_only_the_leader_posts(server: fakeredis.FakeServer) -> None:
    slack = Slack()
    w = Harness(server, slack)
    w.listed(at=NOW)  # not installed at first sight: its first install is news
    w.changed(record(1, NOW + 1, "Initial install underway", "pending-install"), NOW + 1)
    w.run(NOW + 60)
    assert slack.posts == []
    w.leading = False
    w.changed(record(1, NOW + 1, "Install complete"), NOW + 61, "MODIFIED")
    w.run(NOW + 120)
    assert slack.posts == [] and w.keys.notice(f"{KEY}:{int(NOW - 86400)}:1") is None
    w.leading = True
    w.run(NOW + 121)
    assert texts(slack) == ["prod/plate-api: helm revision 1 of plate-api made outside plate-bot (deployed)"]


def test_a_claim_by_another_watcher_is_respected_until_stale(server: fakeredis.FakeServer) -> None:
    slack = Slack()
    w = Harness(server, slack)
    w.listed(record(1, NOW - 600), at=NOW)
    notice = f"{KEY}:{int(NOW - 86400)}:2"
    assert w.keys.claim_notice(notice, "other", NOW) == "mine"  # another replica is posting it
    w.changed(record(2, NOW + 1), NOW + 1)
    w.run(NOW + 30)
    assert slack.posts == []
    w.run(NOW + 62)  # its claim went stale unconfirmed: this watcher posts it
    assert len(slack.posts) == 1 and w.keys.claim_notice(notice, "other", NOW + 70) == "posted"


def test_hostile_records_are_logged_and_skipped(server: fakeredis.FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    slack = Slack()
    w = Harness(server, slack)
    bad = record(2, NOW + 1)
    bad["data"]["release"] = base64.b64encode(b"not base64 inside!").decode()
    with caplog.at_level(logging.WARNING, logger="plate.watch"):
        w.listed(record(1, NOW - 600), at=NOW)
        w.changed(bad, NOW + 1)
        w.changed(record(3, NOW + 2), NOW + 2)
    w.run(NOW + 10)
    assert texts(slack) == ["prod/plate-api: helm revision 3 of plate-api made outside plate-bot (deployed)"]
    assert "skipping a helm release record: data.release is not base64" in caplog.text
