"""The incident watcher end to end: the real `kubernetes` client against the loopback API server (with
SimulatedCluster rolling out Deployments), a real Redis, the fake Slack and the fake helm.

Watch streams are cut with 410 Gone and dropped connections mid-way; the Slack calls are asserted
exactly: one root and one diagnosis per incident, counter edits on the root only, one resolution, and
none of it again after a restart, nor from a second watcher process taking over from a killed leader."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from config.environments import parse_config
from core.requests import new_request
from core.slack import SlackGateway, make_client
from core.store import Store
from sandbox.cluster import SimulatedCluster
from sandbox.kubeapi import FakeKubeAPI
from sandbox.slack import Call, FakeSlack
from tests.conftest import BOT_TOKEN, ROOT, plate_config, write_config
from tests.waiting import wait_until
from workers.helm import Helm
from workers.kube import KubeGateway
from workers.watcher.incidents import Incident
from workers.watcher.main import serve_health
from workers.watcher.store import WatchStore
from workers.watcher.watcher import Tuning, Watcher

INC = "C0INCIDENTS"
NS = "plate-prod"
IMAGE = "harbor.example.com/plate/plate-web"
FAST = Tuning(
    lease_ttl=1.0,
    post_interval=0.02,
    updates_per_minute=6000,
    update_burst=100,
    update_interval=0.1,
    quiet=0.3,
    watch_timeout=30,
    backoff_base=0.02,
    backoff_max=0.2,
    tick=0.02,
)


def deployment(tag: str, name: str = "plate-web", replicas: int = 2) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "imagePullSecrets": [{"name": "harbor-docker-secret"}],
                    "containers": [{"name": "web", "image": f"{IMAGE}:{tag}"}],
                },
            },
        },
    }


def posts(slack: FakeSlack) -> list[Call]:
    return [c for c in slack.calls_to("chat.postMessage") if c.params.get("channel") == INC and c.status == 200]


def updates(slack: FakeSlack) -> list[Call]:
    return [c for c in slack.calls_to("chat.update") if c.params.get("channel") == INC and c.status == 200]


class Watchers:
    """Watcher instances wired to the fakes, run in threads; stopped (lease released) at teardown."""

    def __init__(self, config: Any, redis_url: str, slack: FakeSlack, kubeconfig: str, helm_bin: Path) -> None:
        self.config, self.redis_url, self.slack = config, redis_url, slack
        self.kubeconfig, self.helm_bin = kubeconfig, helm_bin
        self.running: list[tuple[Watcher, threading.Event, threading.Thread]] = []

    def start(self, identity: str, tuning: Tuning = FAST) -> Watcher:
        store = Store(redis.Redis.from_url(self.redis_url))
        slack = SlackGateway(make_client(BOT_TOKEN, self.slack.api_url))
        watcher = Watcher(
            self.config,
            store,
            slack,
            kube_for=lambda env: KubeGateway.connect(env.kube_context, self.kubeconfig),
            helm_for=lambda env: Helm(
                str(self.helm_bin), namespace=env.namespace, kube_context=env.kube_context, kubeconfig=self.kubeconfig
            ),
            tuning=tuning,
            identity=identity,
        )
        stop = threading.Event()
        thread = threading.Thread(target=watcher.run, args=(stop,), name=f"test-{identity}", daemon=True)
        thread.start()
        self.running.append((watcher, stop, thread))
        return watcher

    def stop(self, watcher: Watcher) -> None:
        for w, stop, thread in self.running:
            if w is watcher:
                stop.set()
                thread.join(10)
                assert not thread.is_alive()

    def stop_all(self) -> None:
        for _w, stop, _t in self.running:
            stop.set()
        for _w, _s, thread in self.running:
            thread.join(10)


@pytest.fixture
def sim(kube_api: FakeKubeAPI) -> Iterator[SimulatedCluster]:
    with SimulatedCluster(kube_api, ready_after=0.1, tick=0.02) as cluster:
        yield cluster


@pytest.fixture
def watchers(plate_env: dict[str, Any], fake_slack: FakeSlack, helm_bin: Path) -> Iterator[Watchers]:
    config = parse_config(plate_config(prod={"argocd_app": "plate-web-prod"}))
    w = Watchers(config, plate_env["REDIS_URL"], fake_slack, plate_env["KUBECONFIG"], helm_bin)
    yield w
    w.stop_all()


@pytest.fixture
def store(redis_url: str) -> Store:
    return Store(redis.Redis.from_url(redis_url))


@pytest.fixture
def watch_keys(redis_url: str) -> WatchStore:
    return WatchStore(redis.Redis.from_url(redis_url))


def helm_releases(helm_bin: Path, request_id: str) -> None:
    """Two revisions of plate-web in prod, the second made by a plate-bot deploy."""
    chart = ROOT / "examples" / "plate-web"
    for description in ("first install", f"plate-bot {request_id} by U0BOB"):
        subprocess.run(
            [str(helm_bin), "upgrade", "--install", "plate-web", str(chart), "-f",
             str(chart / "values-production.yaml"), "--description", description, "--kube-context", "plate-prod",
             "-n", NS],
            check=True,
            capture_output=True,
        )  # fmt: skip


def deploy_request(store: Store, request_id: str) -> None:
    request = new_request(request_id, verb="deploy", env="prod", requester="U0BOB", channel="C0DEPLOYS",
                          now=time.time(), ttl=900, approvals_required=1)  # fmt: skip
    store.create(request, lock_env=None)
    store.transition(request_id, lambda r: r.with_message("1700000000.000042"))


def test_one_thread_per_incident_through_410_and_dropped_streams_then_resolved(
    watch_keys: WatchStore,
    kube_api: FakeKubeAPI, sim: SimulatedCluster, fake_slack: FakeSlack, watchers: Watchers, helm_bin: Path,
    store: Store,
) -> None:  # fmt: skip
    deploy_request(store, "0a1b2c3d4e5f")
    helm_releases(helm_bin, "0a1b2c3d4e5f")
    sim.fail_images(r":9\.9\.9$", "Unauthorized")
    watcher = watchers.start("w1")
    kube_api.put(deployment("9.9.9"))

    wait_until(lambda: len(posts(fake_slack)) == 3, what="root + diagnosis")
    root, body, change = posts(fake_slack)
    assert "thread_ts" not in root.params
    assert root.params["text"] == "[critical] prod: Image pull failing — Deployment/plate-web"
    rendered = json.dumps(root.params["blocks"])
    assert "*Image pull failing* in `prod`: `Deployment/plate-web` (namespace `plate-prod`)" in rendered
    assert "Severity *critical*" in rendered and "since " in rendered
    root_ts = fake_slack.messages(INC)[0].ts
    assert body.params["thread_ts"] == change.params["thread_ts"] == root_ts
    text = body.params["text"]
    assert "*Diagnosis of `Deployment/plate-web` in `prod`: Image pull failing*" in text
    assert "*Pods (0/2 ready)*" in text and "401 Unauthorized" in text
    assert "the kubelet's pull was unauthorized" in text  # the pull error, in words, with what to do
    # Walked back from the pull to the first broken link: nothing of the ESO chain exists here.
    assert re.search(r":point_right: First broken link: .*`openbao-token`", text)
    assert (
        "Helm revision 2" in change.params["text"]
        and "plate-bot request `0a1b2c3d4e5f` by <@U0BOB>" in (change.params["text"])
    )
    assert "https://fake.slack.com/archives/C0DEPLOYS/p1700000000000042" in change.params["text"]
    button = change.params["blocks"][1]["elements"][0]
    assert (button["action_id"], button["value"]) == ("plate_request_rollback", "prod")

    # 410 Gone mid-stream: every stream lists again; nothing is announced again.
    wait_until(lambda: all(s.watching for s in watcher.streams), what="every stream watching")
    listed = {s.key: s.lists for s in watcher.streams}
    kube_api.expire_watches()
    wait_until(lambda: all(s.lists > listed[s.key] for s in watcher.streams), what="relists after 410")
    # A dropped connection: every stream resumes from its last resourceVersion, without a list.
    wait_until(lambda: all(s.watching for s in watcher.streams), what="every stream watching again")
    broken = {s.key: (s.failures_total, s.lists) for s in watcher.streams}
    kube_api.drop_watches()
    wait_until(lambda: all(s.failures_total > broken[s.key][0] for s in watcher.streams), what="streams to notice")
    assert all(s.lists == broken[s.key][1] for s in watcher.streams)
    # Recurrences keep coming through the resumed streams: the root's counter moves, nothing is posted.
    seen = len(updates(fake_slack))
    wait_until(lambda: len(updates(fake_slack)) > seen + 2, what="counter edits after the drop")
    assert len(posts(fake_slack)) == 3

    sim.clear_failures()
    kube_api.put(deployment("1.4.0"))
    wait_until(lambda: len(posts(fake_slack)) == 4, what="the resolution")
    resolution = posts(fake_slack)[3]
    assert resolution.params["thread_ts"] == root_ts
    assert resolution.params["text"].startswith(":white_check_mark: Resolved after 1 min: `Deployment/plate-web`")
    wait_until(lambda: updates(fake_slack)[-1].params["text"].startswith("[resolved]"), what="root marked resolved")
    assert {c.params["ts"] for c in updates(fake_slack)} == {root_ts}  # edits touch only the root
    assert "seen " in json.dumps(updates(fake_slack)[-1].params["blocks"])
    wait_until(lambda: watch_keys.active_incidents() == [], what="nothing owed any more")
    time.sleep(0.3)  # a few more rounds: nothing else is sent
    assert len(posts(fake_slack)) == 4


def test_image_pull_diagnosis_with_a_healthy_chain_and_an_unreachable_registry(
    plate_env: dict[str, Any], kube_api: FakeKubeAPI, sim: SimulatedCluster, fake_slack: FakeSlack, helm_bin: Path
) -> None:
    """Issue 18: every link of the pull-secret chain works, plate-bot's pod cannot reach the registry API,
    and a new tag does not exist. The diagnosis walks the chain as harbor-verify does, the pods' own pull
    standing in for the test pod: the registry is a warning, and the first broken link is the pull's own
    cause (the missing tag), not the registry."""
    from tests.integration.distribution import free_port
    from tests.integration.harbor_fixtures import seed_chain

    url = f"http://127.0.0.1:{free_port()}"
    config = parse_config(plate_config(prod={"harbor": {"registry_url": url}}))
    seed_chain(kube_api, NS, "harbor.example.com")
    sim.fail_images(r":9\.9\.9$", "NotFound")
    watchers = Watchers(config, plate_env["REDIS_URL"], fake_slack, plate_env["KUBECONFIG"], helm_bin)
    try:
        watchers.start("w1")
        kube_api.put(deployment("9.9.9"))
        wait_until(lambda: len(posts(fake_slack)) >= 2, what="root + diagnosis")
    finally:
        watchers.stop_all()
    text = posts(fake_slack)[1].params["text"]
    assert "*Diagnosis of `Deployment/plate-web` in `prod`: Image pull failing*" in text
    walk = text.split("Walked back from the pods' pull (no test pod):", 1)[1].splitlines()
    assert walk[1].startswith(":x: pod pull — `") and "not found (manifest unknown)" in walk[1]
    assert walk[2].startswith(f":warning: registry auth — cannot connect to {url}")
    assert "pulls do not take this path" in walk[2] and "`harbor.registry_url`" in walk[2]
    for title in ("Secret harbor-docker-secret", "ExternalSecret harbor-registry-secret", "SecretStore openbao-harbor",
                  "Secret openbao-token"):  # fmt: skip
        assert any(line.startswith(f":white_check_mark: {title}") for line in walk), title
    first = next(line for line in walk if line.startswith(":point_right: First broken link: "))
    assert first == (
        f":point_right: First broken link: `{IMAGE}:9.9.9` was not found by the kubelet; push the image or fix the tag"
    )
    assert "registry" not in first and ":x: registry" not in text


def test_a_restarted_watcher_does_not_announce_again(
    watch_keys: WatchStore,
    kube_api: FakeKubeAPI,
    sim: SimulatedCluster,
    fake_slack: FakeSlack,
    watchers: Watchers,
    store: Store,
) -> None:
    sim.fail_images(r":9\.9\.9$", "CrashLoopBackOff")
    kube_api.put(deployment("9.9.9"))
    pods = wait_until(lambda: len(kube_api.list("v1", "Pod", NS)) == 2 and kube_api.list("v1", "Pod", NS), what="pods")
    for pod in pods:  # what the crashed containers said before dying (read with previous=true)
        log = "starting plate-web\nconnecting with password=hunter2-secret\npanic: config missing\n"
        kube_api.set_log(NS, pod["metadata"]["name"], log, container="web", previous=True)
    first = watchers.start("w1")
    wait_until(lambda: len(posts(fake_slack)) == 4, what="root, findings, logs, change")
    assert posts(fake_slack)[0].params["text"] == "[critical] prod: Crash loop — Deployment/plate-web"
    logs = posts(fake_slack)[2].params["text"]
    assert "*Last log lines* `plate-web-" in logs and "panic: config missing" in logs
    assert "hunter2" not in fake_slack.dump() and "password=[REDACTED]" in logs  # the Slack layer redacts
    watchers.stop(first)
    assert watch_keys.lease_holder("watch") is None  # released on stop: no need to wait out the lease
    edits = len(updates(fake_slack))

    second = watchers.start("w2")
    wait_until(lambda: second.active and all(s.lists for s in second.streams), what="the second watcher")
    wait_until(lambda: len(updates(fake_slack)) > edits, what="the counter edited by the second watcher")
    assert len(posts(fake_slack)) == 4  # no second root, no second diagnosis

    sim.clear_failures()
    kube_api.put(deployment("1.4.0"))
    wait_until(lambda: len(posts(fake_slack)) == 5, what="the resolution")
    assert posts(fake_slack)[4].params["text"].startswith(":white_check_mark: Resolved")
    root = fake_slack.messages(INC)[0]
    wait_until(
        lambda: fake_slack.thread(INC, root.ts)[0].text.startswith("[resolved]"), what="the root marked resolved"
    )


def test_argocd_sync_failure_and_secret_sync_incidents(
    watch_keys: WatchStore, kube_api: FakeKubeAPI, fake_slack: FakeSlack, watchers: Watchers, store: Store
) -> None:
    app = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "plate-web-prod", "namespace": "argocd"},
        "spec": {
            "source": {"repoURL": "https://git.example.com/platform/plate-web.git", "targetRevision": "main",
                       "path": "helm/plate-web"},
            "destination": {"namespace": NS},
            "syncPolicy": {"automated": {"prune": True, "selfHeal": True}, "retry": {"limit": 2}},
        },
        "status": {
            "sync": {"status": "Unknown"},
            "health": {"status": "Healthy"},
            "conditions": [{"type": "ComparisonError", "message": "rpc error: authentication required"}],
        },
    }  # fmt: skip
    kube_api.put(app)
    kube_api.put(
        {
            "apiVersion": "external-secrets.io/v1",
            "kind": "ExternalSecret",
            "metadata": {"name": "harbor-registry-secret", "namespace": NS},
            "spec": {"refreshInterval": "1h", "secretStoreRef": {"name": "openbao-harbor"}},
            "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "SecretSyncedError",
                                       "message": "could not get secret data from provider"}]},
        }
    )  # fmt: skip
    watchers.start("w1")
    wait_until(lambda: len([c for c in posts(fake_slack) if "thread_ts" not in c.params]) == 2, what="two roots")
    wait_until(lambda: len(posts(fake_slack)) == 6, what="two diagnoses")
    by_root = {c.params["text"] for c in posts(fake_slack) if "thread_ts" not in c.params}
    assert by_root == {
        "[critical] prod: Argo CD sync failed — Application/plate-web-prod",
        "[critical] prod: ExternalSecret not syncing — ExternalSecret/harbor-registry-secret",
    }
    texts = "\n".join(c.params["text"] for c in posts(fake_slack))
    assert "Likely cause: Argo CD cannot authenticate to the repository" in texts
    assert ":x: no repository credentials match `https://git.example.com/platform/plate-web.git`" in texts
    assert "production follows a moving branch" in texts and "revisionHistoryLimit 10 (default)" in texts
    assert re.search(r":x: ExternalSecret harbor-registry-secret\W+not synced: could not get secret data", texts)

    kube_api.patch_status(
        "argoproj.io/v1alpha1",
        "Application",
        "plate-web-prod",
        {"sync": {"status": "Synced"}, "health": {"status": "Healthy"}, "conditions": None},
        "argocd",
    )
    wait_until(lambda: len(posts(fake_slack)) == 7, what="the Argo CD resolution")
    assert "`Application/plate-web-prod` in `prod` is healthy again" in posts(fake_slack)[6].params["text"]
    assert len(watch_keys.active_incidents()) == 1  # the ExternalSecret is still broken


def test_two_watcher_processes_one_leader_and_a_handover_without_duplicates(
    watch_keys: WatchStore,
    plate_env: dict[str, Any], kube_api: FakeKubeAPI, sim: SimulatedCluster, fake_slack: FakeSlack, store: Store,
    tmp_path: Path,
) -> None:  # fmt: skip
    write_config(plate_env, prod={"argocd_app": "plate-web-prod"})
    argv = [sys.executable, "-m", "bot", "watch", "--metrics-port", "0", "--lease-ttl", "1", "--quiet", "0.3"]
    logs = [open(tmp_path / f"watch-{i}.log", "w") for i in range(2)]  # noqa: SIM115 - closed below
    procs = [subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log) for log in logs]
    try:
        holder = wait_until(lambda: watch_keys.lease_holder("watch"), timeout=20, what="a leader")
        leader = next(p for p in procs if f"-{p.pid}-" in holder)
        standby = next(p for p in procs if p is not leader)
        sim.fail_images(r":9\.9\.9$", "ImagePullBackOff")
        kube_api.put(deployment("9.9.9"))
        wait_until(lambda: len(posts(fake_slack)) == 3, timeout=20, what="root + diagnosis")

        def diagnosed() -> bool:
            raws = watch_keys.active_incidents()
            return bool(raws) and Incident.from_storage(raws[0]).diagnosed

        wait_until(diagnosed, what="the diagnosis recorded")
        leader.send_signal(signal.SIGKILL)  # no goodbye, no lease release
        leader.wait(5)
        sim.clear_failures()
        kube_api.put(deployment("1.4.0"))
        wait_until(lambda: len(posts(fake_slack)) == 4, timeout=20, what="the standby's resolution")
        assert f"-{standby.pid}-" in str(watch_keys.lease_holder("watch"))
        roots = [c for c in posts(fake_slack) if "thread_ts" not in c.params]
        assert len(roots) == 1 and posts(fake_slack)[3].params["text"].startswith(":white_check_mark: Resolved")
        assert sum("*Diagnosis of" in c.params["text"] for c in posts(fake_slack)) == 1

        standby.send_signal(signal.SIGTERM)
        assert standby.wait(10) == 0
        assert watch_keys.lease_holder("watch") is None  # released: a third replica would not wait
        assert len(posts(fake_slack)) == 4
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        for log in logs:
            log.close()


def test_healthz_and_metrics(watchers: Watchers) -> None:
    watcher = watchers.start("w1")
    wait_until(lambda: watcher.active, what="leadership")
    server = serve_health(watcher, "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as resp:
            assert resp.status == 200
            assert json.loads(resp.read())["ok"] is True
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
            assert b"plate_incidents_total" in resp.read()
        watchers.stop(watcher)
        watcher.heartbeat -= 1000  # a loop that stopped turning: the liveness probe fails
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{url}/healthz", timeout=5)
        assert info.value.code == 503
    finally:
        server.shutdown()
