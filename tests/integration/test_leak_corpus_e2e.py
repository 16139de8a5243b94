"""The leak corpus (tests/leaks.py) end to end, through every path by which cluster text reaches Slack or a
log: a deploy whose helm fails (stderr), pod Warning events and previous container logs (`/plate diagnose`),
Argo CD operation messages (`/plate argocd`), the incident watcher (events, logs, ExternalSecret and
SecretStore status, Argo CD), and App Home (what a job's failure left for the Home tab).

The real service (signed HTTP, Bolt, RQ with forking workers, the real `kubernetes` client against the
loopback API server, the fake helm) posts to the fake Slack, which records every call; every JSON log
record of the process and its work-horses goes to a file. Each path is fed the corpus in batches sized to
what it shows (8 events, 2 log tails, 1,500 characters of stderr), so every leak is displayed, not cut
away. The environment's Secret `app-credentials` holds the shapeless values (only their exact value can
cut them). Asserted: no secret, nor either half of one, anywhere; the near-misses intact where shown.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from core.redact import REDACTOR
from sandbox.helm import set_behaviour
from sandbox.kubeapi import FakeKubeAPI
from sandbox.slack import FakeSlack
from tests.conftest import Service, write_config
from tests.integration.k8s_fixtures import ago
from tests.integration.test_redaction_e2e import everything_slack_got
from tests.integration.test_redaction_e2e import log_file as log_file  # a fixture
from tests.integration.test_watcher import Watchers
from tests.integration.test_watcher import watchers as watchers  # a fixture
from tests.leaks import LEAKS, OPENBAO_TOKEN, Leak, fragments, known_secret
from tests.waiting import wait_until

NS = "plate-prod"


def chunks(items: Sequence[Leak], size: int) -> list[Sequence[Leak]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def assert_nothing_leaked(text: str, leaks: Sequence[Leak] = LEAKS) -> None:
    for leak in leaks:
        for part in {leak.secret, *fragments(leak.secret)}:
            assert part not in text, f"{leak.shape}: {part!r} leaked"


@pytest.fixture(autouse=True)
def _secrets(kube_api: FakeKubeAPI) -> Iterator[None]:
    """The environments' Secrets hold the shapeless values; this process (the bot) does not know them."""
    for ns in ("plate-prod", "plate-stg"):
        kube_api.put(known_secret(ns))
    assert OPENBAO_TOKEN not in REDACTOR.known
    yield
    for source in REDACTOR.sources():  # what an in-process watcher registered
        if isinstance(source, tuple) and source[:1] == ("secret",):
            REDACTOR.remove(source)


def run(service: Service, text: str, channel: str = "C0DEPLOYS") -> None:
    status, _ = service.command(text, channel=channel)
    assert status == 200
    service.wait(lambda: service.runtime.queue.count >= 1)
    service.run_worker()


# --- pod events and previous logs: /plate diagnose --------------------------------------------------------


def leaky_pod(api: FakeKubeAPI, name: str, leaks: Sequence[Leak], ns: str = NS) -> None:
    """A crash-looping pod (two containers) whose Warning events are the leaks' texts, whose containers'
    previous runs logged them, between the near-misses, and ended with the first and last as their
    termination messages."""
    statuses = [
        {"name": c, "ready": False, "restartCount": 5, "image": "harbor.example.com/plate/plate-web:1.4.0",
         "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container"}},
         "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(30),
                                      "message": leak.text}}}
        for c, leak in (("web", leaks[0]), ("sidecar", leaks[-1]))
    ]  # fmt: skip
    api.put({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
             "spec": {"containers": [{"name": "web", "image": "x"}, {"name": "sidecar", "image": "x"}]},
             "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
                        "containerStatuses": statuses}})  # fmt: skip
    for i, leak in enumerate(leaks):
        api.put({"apiVersion": "v1", "kind": "Event", "metadata": {"name": f"{name}.{i}", "namespace": ns},
                 "involvedObject": {"kind": "Pod", "name": name, "namespace": ns}, "type": "Warning",
                 "reason": "BackOff", "message": leak.text, "count": 2, "firstTimestamp": ago(300),
                 "lastTimestamp": ago(10 + i)})  # fmt: skip
    half = (len(leaks) + 1) // 2
    for container, part in (("web", leaks[:half]), ("sidecar", leaks[half:])):
        lines = [line for leak in part for line in (leak.text, leak.near)]
        api.set_log(ns, name, "\n".join(lines) + "\n", container=container, previous=True)


def test_corpus_through_diagnose_events_and_previous_logs(
    service: Service, kube_api: FakeKubeAPI, fake_slack: FakeSlack, log_file: Path
) -> None:
    groups = chunks(LEAKS, 8)
    for run_groups in [groups[i : i + 3] for i in range(0, len(groups), 3)]:  # 3 workloads diagnosed in full
        names = [f"leaky-{LEAKS.index(group[0]):02d}" for group in run_groups]
        for name, group in zip(names, run_groups, strict=True):
            leaky_pod(kube_api, name, group)
        before = len(fake_slack.calls)
        run(service, "diagnose prod")
        posted = "\n".join(json.dumps(c.params) for c in fake_slack.calls[before:])
        texts = "\n".join(str(c.params.get("text", "")) for c in fake_slack.calls[before:])
        for name, group in zip(names, run_groups, strict=True):
            assert f"Diagnosis of `Pod/{name}`" in texts and f"*Last log lines* `{name}/web`" in texts
            # How each container last ended, as `kubectl describe` says it (issue 14), its message redacted.
            diagnosis = texts.split(f"*Diagnosis of `Pod/{name}`")[1].split("*Diagnosis of")[0]
            for container in ("web", "sidecar"):
                last = f"↳ `{container}` Last State: Terminated, Reason: Error, Exit Code: 1, finished "
                assert re.search(re.escape(last) + r"\d+[sm] ago \(\S+Z\), Message: \S", diagnosis), diagnosis
            assert_nothing_leaked(posted, group)
            for leak in group:  # shown whole: in the log tail, redacted, and the near-miss untouched
                assert leak.near in texts, leak.near
        for name in names:
            kube_api.delete("v1", "Pod", name, NS)
    assert_nothing_leaked(everything_slack_got(fake_slack))
    assert_nothing_leaked(log_file.read_text())


# --- helm's stderr: a deploy that fails -----------------------------------------------------------------------


def test_corpus_through_a_failed_deploy(
    service: Service, fake_slack: FakeSlack, helm_state: Path, log_file: Path
) -> None:
    for i, batch in enumerate(chunks(LEAKS, 7)):
        stderr = "\n".join(line for leak in batch for line in (leak.text, leak.near))
        set_behaviour(helm_state, upgrade="fail", fail_message=batch[0].text, stderr_extra=stderr)
        before = len(fake_slack.calls)
        run(service, f"deploy stg 1.4.{i}")
        replies = "\n".join(str(c.params.get("text", "")) for c in fake_slack.calls[before:])
        assert "helm said:" in replies, replies
        assert_nothing_leaked(replies, batch)
        for leak in batch:
            assert leak.near in replies, leak.near
    assert_nothing_leaked(everything_slack_got(fake_slack))
    assert_nothing_leaked(log_file.read_text())


# --- Argo CD operation messages: /plate argocd ----------------------------------------------------------------


def leaky_app(api: FakeKubeAPI, leaks: Sequence[Leak]) -> None:
    """The Application's last sync failed: its message, 8 failing resources and 5 conditions are leaks."""
    message, resources, conditions = leaks[0], leaks[1:9], leaks[9:14]
    api.put({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "plate-web-prod", "namespace": "argocd"},
        "spec": {"source": {"repoURL": "https://git.example.com/platform/plate-web.git", "targetRevision": "v1.4.0"},
                 "syncPolicy": {"retry": {"limit": 2}}, "revisionHistoryLimit": 5},
        "status": {
            "sync": {"status": "OutOfSync"}, "health": {"status": "Degraded"},
            "conditions": [{"type": "SyncError", "message": leak.text} for leak in conditions],
            "operationState": {"phase": "Failed", "message": message.text, "syncResult": {"revision": "abc",
                "resources": [{"kind": "Secret", "name": f"s{i}", "status": "SyncFailed", "message": leak.text}
                              for i, leak in enumerate(resources)]}},
        },
    })  # fmt: skip


@pytest.fixture
def argocd_app(plate_env: dict[str, Any]) -> None:
    """prod is deployed by Argo CD app plate-web-prod (written before the service reads the file)."""
    write_config(plate_env, prod={"argocd_app": "plate-web-prod"})


def test_corpus_through_argocd_operation_messages(
    argocd_app: None, service: Service, kube_api: FakeKubeAPI, fake_slack: FakeSlack, log_file: Path
) -> None:
    for batch in chunks(LEAKS, 14):
        leaky_app(kube_api, batch)
        before = len(fake_slack.calls)
        run(service, "argocd plate-web-prod")
        texts = "\n".join(str(c.params.get("text", "")) for c in fake_slack.calls[before:])
        assert "Last operation: *Failed*" in texts, texts
        assert_nothing_leaked(texts, batch)
    assert_nothing_leaked(everything_slack_got(fake_slack))
    assert_nothing_leaked(log_file.read_text())


# --- App Home: what a failed job leaves for the Home tab ------------------------------------------------------


def test_app_home_shows_what_a_job_redacted_with_the_environments_secrets(
    service: Service, kube_api: FakeKubeAPI, fake_slack: FakeSlack, log_file: Path
) -> None:
    """A job's failure reason (here the API server's answer) is kept for App Home, which the bot publishes:
    a process that never reads the Secrets. The job must redact it before keeping it."""
    from tests.integration.test_home import open_home

    shown = [leak for leak in LEAKS if leak.known] + [LEAKS[0], LEAKS[18]]
    for leak in shown:
        kube_api.fail("GET", r"/namespaces/plate-stg/pods", 403, times=None, message=leak.text)
        run(service, "status stg")
        kube_api.clear_failures()
        before = len(fake_slack.calls)
        assert open_home(service, "U0BOB") == 200
        service.wait(lambda before=before: fake_slack.calls_to("views.publish")[before:] if False else any(
            c.method == "views.publish" for c in fake_slack.calls[before:]))  # fmt: skip
        home = json.dumps(fake_slack.home_views["U0BOB"]["blocks"])
        assert "*status* by <@U0BOB>" in home and "403 Forbidden" in home, home
        assert_nothing_leaked(home, [leak])
    assert_nothing_leaked(everything_slack_got(fake_slack))
    assert_nothing_leaked(log_file.read_text())


# --- the incident watcher -----------------------------------------------------------------------------------


def eso(kind: str, name: str, leak: Leak) -> dict[str, Any]:
    return {"apiVersion": "external-secrets.io/v1", "kind": kind, "metadata": {"name": name, "namespace": NS},
            "spec": {}, "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Error",
                                                   "message": leak.text}]}}  # fmt: skip


def test_corpus_through_the_watcher(
    kube_api: FakeKubeAPI, fake_slack: FakeSlack, watchers: Watchers, log_file: Path
) -> None:
    """Incidents from leaky pods (events, previous logs), ExternalSecrets and SecretStores (status messages)
    and an Argo CD Application (operation message): roots, diagnoses and the "incident opened" log lines."""
    groups = chunks(LEAKS, 8)
    for group in groups:
        leaky_pod(kube_api, f"leaky-{LEAKS.index(group[0]):02d}", group)
    for i, leak in enumerate(LEAKS):
        kube_api.put(eso("ExternalSecret" if i % 2 else "SecretStore", f"eso-{i:02d}", leak))
    leaky_app(kube_api, LEAKS[:14])
    incidents = len(groups) + len(LEAKS) + 1
    watchers.start("w1")
    roots = lambda: [c for c in fake_slack.calls_to("chat.postMessage") if "thread_ts" not in c.params]  # noqa: E731
    wait_until(lambda: len(roots()) >= incidents, timeout=60, what="a root per incident")
    wait_until(lambda: sum("*Diagnosis of" in str(c.params.get("text")) or "*Argo CD check" in str(c.params.get("text"))
                           for c in fake_slack.calls_to("chat.postMessage")) >= len(groups) + 1, timeout=60,
               what="the diagnoses")  # fmt: skip
    # A diagnosis is a few thread replies, paced by Slack's per-channel rate: the logs come after its head.
    texts = lambda: "\n".join(str(c.params.get("text", "")) for c in fake_slack.calls_to("chat.postMessage"))  # noqa: E731
    nears = [leak.near for group in groups for leak in group]  # the pods' previous logs are shown whole
    wait_until(lambda: all(near in texts() for near in nears), timeout=60, what="every pod's previous logs")
    assert_nothing_leaked(everything_slack_got(fake_slack))
    logged = log_file.read_text()
    assert "incident opened" in logged
    assert_nothing_leaked(logged)
