"""`/plate status` end to end: signed command -> queue -> real RQ worker -> fake helm + loopback
Kubernetes API -> the thread in the fake Slack."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sandbox.helm import recorded_argv
from tests.conftest import ROOT, Service
from tests.integration.k8s_fixtures import seed_namespace


def install_release(helm_bin: Path, ns: str, context: str) -> None:
    chart = ROOT / "examples" / "plate-web"
    subprocess.run(
        [
            str(helm_bin),
            "upgrade",
            "--install",
            "plate-web",
            str(chart),
            "-f",
            str(chart / "values-production.yaml"),
            "--kube-context",
            context,
            "-n",
            ns,
        ],
        check=True,
        capture_output=True,
    )


def test_status_reports_release_pods_and_unready_reasons(service: Service, kube_api, helm_bin, helm_state) -> None:
    seed_namespace(kube_api, "plate-prod", broken=True)
    install_release(helm_bin, "plate-prod", "plate-prod")
    status, _body = service.command("status production")
    assert status == 200
    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()

    card = service.slack.messages("C0DEPLOYS")[0]
    thread = service.slack.thread("C0DEPLOYS", card.ts)
    assert len(thread) == 3, service.slack.render_thread("C0DEPLOYS", card.ts)
    status_msg, details = thread[1], thread[2]
    rendered = str(status_msg.blocks)
    assert "status prod" in rendered and "failed" not in rendered.lower()
    assert status_msg.edits >= 1 and ":white_check_mark: helm status" in rendered
    assert "Release `plate-web` revision 1: *deployed*" in details.text
    assert "2/3 ready" in details.text
    assert "plate-web-8e1a-c" in details.text and "ImagePullBackOff" in details.text
    assert "unauthorized: authentication required" in details.text and "×4" in details.text
    assert "Successfully pulled" not in details.text  # normal events are not excerpted
    assert "hosts plate.example.com" in details.text and "max 10" in details.text
    status_calls = [a for a in recorded_argv(helm_state) if a[0] == "status"]
    assert status_calls == [["status", "plate-web", "-o", "json", "--kube-context", "plate-prod", "-n", "plate-prod"]]


def test_status_with_kubernetes_forbidden_fails_clearly(service: Service, kube_api, helm_bin) -> None:
    seed_namespace(kube_api, "plate-prod")
    install_release(helm_bin, "plate-prod", "plate-prod")
    kube_api.fail("GET", r"/api/v1/namespaces/plate-prod/pods", 403, times=None)
    service.command("status prod")
    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()
    thread = service.slack.thread("C0DEPLOYS", service.slack.messages("C0DEPLOYS")[0].ts)
    text = str(thread[1].blocks)
    assert ":x: Pods, services, ingresses, HPAs" in text and "403 Forbidden" in text
    assert "Traceback" not in service.slack.dump() and "HTTPHeaderDict" not in service.slack.dump()


def test_status_of_missing_release(service: Service, kube_api) -> None:
    seed_namespace(kube_api, "plate-stg")
    service.command("status stg")
    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()
    thread = service.slack.thread("C0DEPLOYS", service.slack.messages("C0DEPLOYS")[0].ts)
    assert "Release not installed." in thread[2].text
