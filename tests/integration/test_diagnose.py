"""`/plate diagnose`, `/plate argocd` and the incident thread's Request rollback button, end to end:
signed HTTP into the running app, a real RQ worker, the loopback Kubernetes API, the fake helm, Redis."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.kubeapi import FakeKubeAPI
from sandbox.signing import action_body, post, sign
from tests.conftest import ROOT, SIGNING_SECRET, Service, write_config
from tests.integration.k8s_fixtures import seed_namespace

INC = "C0INCIDENTS"


@pytest.fixture(autouse=True)
def _config(plate_env: dict[str, Any]) -> Iterator[None]:
    """prod is deployed by Argo CD app plate-web-prod and takes requests in the incident channel too."""
    write_config(plate_env, prod={"argocd_app": "plate-web-prod", "channels": ["C0DEPLOYS", INC]})
    yield


def install(helm_bin: Path, times: int = 2) -> None:
    chart = ROOT / "examples" / "plate-web"
    for _ in range(times):
        subprocess.run(
            [str(helm_bin), "upgrade", "--install", "plate-web", str(chart), "-f",
             str(chart / "values-production.yaml"), "--kube-context", "plate-prod", "-n", "plate-prod"],
            check=True,
            capture_output=True,
        )  # fmt: skip


def run(service: Service, text: str) -> list[Any]:
    status, _ = service.command(text)
    assert status == 200
    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()
    card = [m for m in service.slack.messages("C0DEPLOYS") if not m.thread_ts][-1]
    return service.slack.thread("C0DEPLOYS", card.ts)


def test_diagnose_every_unhealthy_workload_into_the_thread(
    service: Service, kube_api: FakeKubeAPI, helm_bin: Path
) -> None:
    seed_namespace(kube_api, "plate-prod", broken=True)
    install(helm_bin)
    thread = run(service, "diagnose prod")
    texts = "\n".join(m.text for m in thread)
    status = json.dumps(thread[1].blocks)
    assert "diagnose prod" in status and "1 unhealthy" in status and ":x:" not in status
    assert "*Diagnosis of `Pod/plate-web-8e1a-c` in `prod`: Image pull failing*" in texts
    assert "*Pods (0/1 ready)*" in texts and "unauthorized: authentication required" in texts
    assert "Harbor rejected" not in texts  # no docker Secret here: no credentials to ask the registry with
    assert re.search(r":point_right: First broken link: .*`openbao-token`", texts)
    assert "plate-web-7d9f-a" not in texts.split("*Diagnosis of")[1]  # healthy pods are not diagnosed
    change = thread[-1]
    assert "*What changed recently*" in change.text and "Helm revision 2" in change.text
    button = change.blocks[1]["elements"][0]
    assert (button["action_id"], button["value"]) == ("plate_request_rollback", "prod")
    assert "1 to look at: `Pod/plate-web-8e1a-c` (image pull failing)" in status


def test_diagnose_a_named_object_and_an_unknown_one(service: Service, kube_api: FakeKubeAPI) -> None:
    seed_namespace(kube_api, "plate-prod", broken=True)
    thread = run(service, "diagnose prod pod/plate-web-7d9f-a")
    texts = "\n".join(m.text for m in thread)
    assert "*Diagnosis of `Pod/plate-web-7d9f-a` in `prod`*" in texts and "*Pods (1/1 ready)*" in texts
    assert "Pull-secret chain" not in texts
    assert "No helm release history." in texts and len(thread[-1].blocks) == 1  # nothing to roll back to

    service.slack.reset()
    thread = run(service, "diagnose prod nothing-here")
    status = json.dumps(thread[1].blocks)
    assert "no pod, Deployment or StatefulSet called `nothing-here` in `plate-prod`" in status


def test_argocd_runs_procedure_4_for_the_application(service: Service, kube_api: FakeKubeAPI, helm_bin: Path) -> None:
    seed_namespace(kube_api, "plate-prod")
    install(helm_bin)
    kube_api.put(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "plate-web-prod", "namespace": "argocd"},
            "spec": {
                "source": {"repoURL": "https://git.example.com/platform/plate-web.git", "targetRevision": "v1.4.0"},
                "syncPolicy": {"automated": {"prune": True, "selfHeal": True},
                               "retry": {"limit": 3, "backoff": {"duration": "5s"}}},
                "revisionHistoryLimit": 3,
            },
            "status": {
                "sync": {"status": "OutOfSync"},
                "health": {"status": "Healthy"},
                "operationState": {"phase": "Failed", "message": "Unable to resolve 'v1.4.0' to a commit SHA"},
            },
        }
    )  # fmt: skip
    kube_api.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": "repo-plate", "namespace": "argocd",
                         "labels": {"argocd.argoproj.io/secret-type": "repository"}},
            "data": {"url": "aHR0cHM6Ly9naXQuZXhhbXBsZS5jb20vcGxhdGZvcm0vcGxhdGUtd2Vi", "password": "c2VjcmV0"},
        }
    )  # fmt: skip
    thread = run(service, "argocd plate-web-prod")
    texts = "\n".join(m.text for m in thread)
    assert "Likely cause: the targetRevision does not exist in the repository" in texts
    assert "repository Secret `repo-plate` (repository) matches this URL" in texts
    assert "sync policy: automated, prune on, selfHeal on" in texts and "retry limit 3" in texts
    assert "revisionHistoryLimit 3: 3 revision(s) kept" in texts
    assert "Argo CD selfHeal is on for `plate-web-prod`" in thread[-1].text
    assert "c2VjcmV0" not in service.slack.dump()
    status = json.dumps(thread[1].blocks)
    assert "the targetRevision does not exist in the repository" in status


def test_argocd_of_an_unknown_app_is_refused_clearly(service: Service) -> None:
    status, body = service.command("argocd someone-elses-app")
    text = body.decode()
    assert status == 200
    assert "No environment here is deployed by the Argo CD application `someone-elses-app`" in text
    assert "/plate argocd <argocd-app>" in text
    assert service.runtime.queue.count == 0 and service.request_ids() == []


def click_rollback(service: Service, env: str, user: str) -> tuple[int, str]:
    body = action_body("plate_request_rollback", env, user=user, channel=INC, message_ts="1700000000.000300",
                       response_url=service.slack.response_url(user, user=user))  # fmt: skip
    status, _h, _d = post(service.url, body, sign(SIGNING_SECRET, body))
    return status, body


def test_request_rollback_button_opens_the_request_in_the_deploy_channel_linked_both_ways(service: Service) -> None:
    """The incident channel is not where prod takes changes: the card goes to prod's deploy channel (its
    first `channels` entry), links the incident thread, and the incident thread links the card."""
    status, body = click_rollback(service, "prod", "U0BOB")
    assert status == 200
    ids = service.wait(service.request_ids)
    request = service.runtime.store.get(ids[0])
    assert request is not None
    assert (request.verb, request.env, request.requester, request.channel) == ("rollback", "prod", "U0BOB", "C0DEPLOYS")
    assert request.approvals_required == 1 and request.args == {}
    assert request.origin == f"https://fake.slack.com/archives/{INC}/p1700000000000300"
    service.wait(lambda: service.slack.messages("C0DEPLOYS"))
    card = json.dumps(service.slack.messages("C0DEPLOYS")[0].blocks)
    assert "rollback `prod`" in card and "U0BOB" in card and request.origin in card
    back = service.wait(lambda: [m for m in service.slack.messages(INC) if m.thread_ts == "1700000000.000300"])
    request = service.wait(lambda: (r := service.runtime.store.get(ids[0])) and r.message_ts and r)
    assert "Rollback requested by <@U0BOB>" in back[0].text
    assert f"p{request.message_ts.replace('.', '')}" in back[0].text
    # Slack redelivering the same click changes nothing.
    post(service.url, body, sign(SIGNING_SECRET, body))
    assert len(service.wait(service.request_ids)) == 1


def test_request_rollback_follows_the_environments_rules(service: Service, plate_env: dict[str, Any]) -> None:
    # stg takes commands anywhere and needs no approval: the click queues the rollback at once.
    click_rollback(service, "stg", "U0EVE")
    service.wait(lambda: service.runtime.queue.count == 1)
    request = service.runtime.store.get(service.request_ids()[0])
    assert request is not None and (request.verb, request.status.value) == ("rollback", "approved")
    # A forged value is parsed like typed text: an unknown environment is a friendly refusal.
    click_rollback(service, "moon", "U0EVE")
    service.wait(lambda: any("no environment called `moon`" in str(e) for e in service.slack.ephemerals("U0EVE")))
    assert len(service.request_ids()) == 1
