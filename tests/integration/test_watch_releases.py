"""The watcher with several apps per environment (issue 14), end to end: the real watcher loop against the
loopback Kubernetes API (helm's release Secrets written by the fake helm executable), a real Redis and the
fake Slack.

An outside `helm upgrade` is announced once in the deploy channel, and not again after a restart; a
revision plate-bot made (its description, or its change record) is not announced; an incident on plate-api's
pods names plate-api and its Request rollback button asks for `prod/plate-api`."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from config.environments import PlateConfig, parse_config
from core.store import Store
from sandbox.cluster import SimulatedCluster
from sandbox.kubeapi import FakeKubeAPI
from sandbox.slack import Call, FakeSlack
from tests.conftest import ROOT
from tests.integration.test_watcher import FAST, INC, NS, Watchers, deployment
from tests.waiting import wait_until

DEPLOYS = "C0DEPLOYS"
CHART = ROOT / "examples" / "plate-web"  # both releases use it: the watcher needs no chart of its own
API_KEY = f"prod/{NS}/plate-api"  # Environment.key of prod's plate-api
TUNING = replace(FAST, notice_grace=0.3, notice_check=0.05)


def two_apps() -> PlateConfig:
    return parse_config(
        {
            "incident_channel": INC,
            "environments": {
                "prod": {
                    "kube_context": "plate-prod",
                    "namespace": NS,
                    "channels": [DEPLOYS],
                    "approvals_required": 1,
                    "approvers": ["U0ALICE"],
                    "apps": {"plate-web": {"chart": str(CHART)}, "plate-api": {"chart": str(CHART)}},
                }
            },
        }
    )


@pytest.fixture
def watchers(plate_env: dict[str, Any], fake_slack: FakeSlack, helm_bin: Path) -> Iterator[Watchers]:
    w = Watchers(two_apps(), plate_env["REDIS_URL"], fake_slack, plate_env["KUBECONFIG"], helm_bin)
    yield w
    w.stop_all()


@pytest.fixture
def store(redis_url: str) -> Store:
    import redis

    return Store(redis.Redis.from_url(redis_url))


def helm(helm_bin: Path, release: str, *args: str, kube: FakeKubeAPI | None = None) -> None:
    """The fake helm run by hand, as someone with cluster access would (with the API: it writes helm's
    release Secrets there, and applies the chart)."""
    env = {**os.environ, "FAKE_HELM_KUBE_URL": kube.url} if kube else {**os.environ}
    if not kube:
        env.pop("FAKE_HELM_KUBE_URL", None)
    argv = [str(helm_bin), "upgrade", "--install", release, str(CHART), "-f", str(CHART / "values-production.yaml"),
            "--kube-context", "plate-prod", "-n", NS, *args]  # fmt: skip
    subprocess.run(argv, env=env, check=True, capture_output=True, timeout=60)


def notices(slack: FakeSlack) -> list[Call]:
    return [c for c in slack.calls_to("chat.postMessage") if c.params.get("channel") == DEPLOYS and c.status == 200]


def incident_posts(slack: FakeSlack) -> list[Call]:
    return [c for c in slack.calls_to("chat.postMessage") if c.params.get("channel") == INC and c.status == 200]


def outside(release: str, revision: int) -> str:
    return f"prod/{release}: helm revision {revision} of {release} made outside plate-bot (deployed)"


def test_outside_helm_upgrades_are_announced_once_and_plate_bots_are_not(
    kube_api: FakeKubeAPI, fake_slack: FakeSlack, watchers: Watchers, helm_bin: Path, store: Store
) -> None:
    helm(helm_bin, "plate-web", kube=kube_api)  # before the watcher ever looked: history
    first = watchers.start("w1", TUNING)
    wait_until(lambda: first.active and all(s.lists for s in first.streams), what="the watcher listing")
    assert {s.key.kind for s in first.streams} >= {"helmsecrets", "helmconfigmaps", "pods", "events"}
    assert len([s for s in first.streams if s.key.kind == "pods"]) == 1  # two apps, one namespace: one stream
    [records] = [s for s in first.streams if s.key.kind == "helmsecrets"]
    assert records.key.selector == "name in (plate-api,plate-web)"  # other releases' records are not listed
    helm(helm_bin, "someone-elses", kube=kube_api)  # nor announced

    helm(helm_bin, "plate-api", "--set-string", "image.tag=2.2.0", "--description", "hotfix by hand", kube=kube_api)
    wait_until(lambda: len(notices(fake_slack)) == 1, what="the outside revision's notice")
    [notice] = notices(fake_slack)
    assert notice.params["text"] == outside("plate-api", 1)
    body = notice.params["blocks"][0]["text"]["text"]
    assert "*Helm release changed outside plate-bot* in `prod/plate-api`: release `plate-api` revision *1*" in body
    assert "image `2.2.0`" in body and "helm: `hotfix by hand`" in body and "chart `plate-web-" in body
    assert "`/plate history prod plate-api`" in notice.params["blocks"][1]["elements"][0]["text"]

    # plate-bot's own: a deploy (its description names the request), and a change its job's record covers.
    helm(helm_bin, "plate-web", "--description", "plate-bot 0a1b2c3d4e5f by U0BOB", kube=kube_api)
    job = {"request": "9f8e7d6c5b4a", "verb": "rollback", "env": "prod", "requester": "U0BOB",
           "started": time.time(), "ended": None, "deadline": time.time() + 600, "outcome": "running"}  # fmt: skip
    store.save_change(API_KEY, job)
    helm(helm_bin, "plate-api", "--set-string", "image.tag=2.1.0", kube=kube_api)
    store.save_change(API_KEY, {**job, "ended": time.time(), "outcome": "succeeded"})
    # A later outside change is announced; by then the two before it were decided (same grace, seen first).
    helm(helm_bin, "plate-web", "--set-string", "image.tag=1.6.0", kube=kube_api)
    wait_until(lambda: len(notices(fake_slack)) == 2, what="the next outside revision's notice")
    assert notices(fake_slack)[1].params["text"] == outside("plate-web", 3)
    time.sleep(0.5)
    assert len(notices(fake_slack)) == 2

    # Restarted: nothing is announced twice; what changed while it was down is.
    watchers.stop(first)
    helm(helm_bin, "plate-api", "--set-string", "image.tag=2.3.0", kube=kube_api)
    second = watchers.start("w2", TUNING)
    wait_until(lambda: len(notices(fake_slack)) == 3, what="the notice of the revision made while down")
    assert notices(fake_slack)[2].params["text"] == outside("plate-api", 3)
    wait_until(lambda: second.active and all(s.lists for s in second.streams), what="the second watcher listing")
    kube_api.expire_watches()  # a relist (410 Gone) changes nothing either
    wait_until(lambda: all(s.lists > 1 for s in second.streams if s.key.kind == "helmsecrets"), what="relists")
    time.sleep(0.5)
    assert len(notices(fake_slack)) == 3
    assert incident_posts(fake_slack) == []


def test_an_incident_on_plate_api_names_the_app_and_offers_its_rollback(
    kube_api: FakeKubeAPI, fake_slack: FakeSlack, watchers: Watchers, helm_bin: Path, store: Store
) -> None:
    helm(helm_bin, "plate-api")
    helm(helm_bin, "plate-api", "--set-string", "image.tag=9.9.9")  # helm history: a revision to go back to
    with SimulatedCluster(kube_api, ready_after=0.1, tick=0.02) as sim:
        sim.fail_images(r":9\.9\.9$", "Unauthorized")
        kube_api.put(deployment("1.4.0", name="plate-web"))
        kube_api.put(deployment("9.9.9", name="plate-api"))
        watchers.start("w1", TUNING)
        wait_until(lambda: len(incident_posts(fake_slack)) == 3, what="root + diagnosis of plate-api")
    root, body, change = incident_posts(fake_slack)
    assert root.params["text"] == "[critical] prod/plate-api: Image pull failing — Deployment/plate-api"
    assert "*Image pull failing* in `prod/plate-api`: `Deployment/plate-api`" in json.dumps(root.params["blocks"])
    assert "*Diagnosis of `Deployment/plate-api` in `prod/plate-api`: Image pull failing*" in body.params["text"]
    assert "Helm revision 2" in change.params["text"]
    button = change.params["blocks"][1]["elements"][0]
    assert (button["action_id"], button["value"]) == ("plate_request_rollback", "prod/plate-api")
    assert "`/plate rollback prod plate-api`" in json.dumps(change.params["blocks"])
    assert notices(fake_slack) == []  # helm ran without the API here: no release records to announce
