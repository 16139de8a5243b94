"""Deploys end to end: signed slash command → plan job → approval → deploy job, against the fake helm
(real rendering, applying manifests to the loopback API) and a simulated cluster that rolls pods out."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from config.environments import load_config
from config.settings import Settings
from core.backupkeys import backup_policy
from core.requests import Status
from sandbox.cluster import SimulatedCluster
from sandbox.helm import read_releases, recorded_argv, set_behaviour
from tests.conftest import ROOT, Service, write_config

CHART = ROOT / "examples" / "plate-web"


def reload_config(service: Service, plate_env: dict[str, Any]) -> None:
    """The bot process re-reads the environments file (workers read it per job)."""
    service.runtime.listeners.services.config = load_config(plate_env["config_path"])


def helm(helm_bin: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm_bin), *args], check=True, capture_output=True, text=True)


def install(helm_bin: Path, cluster: SimulatedCluster, tag: str = "1.4.0") -> None:
    """What was live before plate-bot's deploy: revision 1 installed by hand."""
    helm(
        helm_bin,
        "upgrade",
        "--install",
        "plate-web",
        str(CHART),
        "-f",
        str(CHART / "values-production.yaml"),
        "--set-string",
        f"image.tag={tag}",
        "--kube-context",
        "plate-prod",
        "-n",
        "plate-prod",
    )
    cluster.settle()


def approve_and_run(service: Service, text: str, approver: str = "U0ALICE") -> Any:
    """/plate <text> from U0BOB, the plan job, approval by `approver`, the deploy job."""
    service.command(text)
    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()  # plan
    request = service.runtime.store.get(service.request_ids()[0])
    assert request.planned and request.status is Status.PENDING, service.slack.dump()
    service.click("plate_approve", request.id, user=approver)
    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()  # deploy
    return service.runtime.store.get(request.id)


def thread_text(service: Service) -> str:
    card = next(m for m in service.slack.messages("C0DEPLOYS") if not m.thread_ts or m.thread_ts == m.ts)
    return service.slack.render_thread("C0DEPLOYS", card.ts)


def status_message(service: Service, title: str) -> str:
    found = [m for m in service.slack.messages("C0DEPLOYS") if m.text.startswith(title)]
    assert found, service.slack.dump()
    return json.dumps(found[-1].blocks, ensure_ascii=False)


def deploy_argv(helm_state: Path, verb: str = "upgrade") -> list[list[str]]:
    return [a for a in recorded_argv(helm_state) if a[0] == verb and "--atomic" in a]


def test_prod_deploy_success_runs_every_step_in_order(service, cluster, helm_bin, helm_state) -> None:
    install(helm_bin, cluster)
    request = approve_and_run(service, "deploy prod 1.5.0")
    status = status_message(service, "deploy prod")
    assert "deploy prod* — succeeded" in status
    for step in (
        "Cluster check",
        "plan and digest check",
        "Backup",
        "helm upgrade",
        "Rollout verification",
        "Status summary",
    ):
        assert f":white_check_mark: {step}" in status or f":white_check_mark: Chart validation, {step}" in status
    assert "matches the approval" in status and "revision 1 saved" in status
    [argv] = deploy_argv(helm_state)
    assert argv == [
        "upgrade",
        "--install",
        "plate-web",
        str(CHART),
        "-f",
        str(CHART / "values-production.yaml"),
        "--set-string",
        "image.tag=1.5.0",
        "--atomic",
        "--wait",
        "--timeout",
        "120s",
        "--description",
        f"plate-bot {request.id} by U0BOB",
        "--kube-context",
        "plate-prod",
        "-n",
        "plate-prod",
    ]
    revisions = read_releases(helm_state, "plate-web", "plate-prod")
    assert [r["info"]["status"] for r in revisions] == ["superseded", "deployed"]
    assert service.runtime.store.lock_holder("prod") is None
    assert service.runtime.store.backup_revisions("prod") == [1]
    backup = service.runtime.store.backup("prod", 1, backup_policy(Settings()).open)
    assert "plate-web:1.4.0" in backup["manifest"] and backup["meta"]["chart"] == "plate-web-1.4.0"
    text = thread_text(service)
    assert "Image: `harbor.example.com/plate/plate-web:1.4.0` → `harbor.example.com/plate/plate-web:1.5.0`" in text
    assert "Release `plate-web` revision 2: *deployed*" in text


def test_change_after_approval_is_refused(service, cluster, helm_bin, helm_state, plate_env, tmp_path) -> None:
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    write_config(plate_env, prod={"chart": str(chart), "values": [str(chart / "values-production.yaml")]})
    reload_config(service, plate_env)
    service.command("deploy prod 1.5.0")
    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()
    request = service.runtime.store.get(service.request_ids()[0])
    values = chart / "values-production.yaml"
    values.write_text(values.read_text().replace("maxReplicas: 10", "maxReplicas: 20"))
    service.click("plate_approve", request.id, user="U0ALICE")
    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()
    status = status_message(service, "deploy prod")
    assert "the change approved is no longer what would be deployed; request again" in status
    assert deploy_argv(helm_state) == []
    assert service.runtime.store.lock_holder("prod") is None


def test_prod_refuses_a_cluster_without_prod_in_its_name_before_any_helm_call(
    service, cluster, helm_bin, helm_state, kube_api, plate_env
) -> None:
    kube_api.write_kubeconfig(plate_env["KUBECONFIG"], {"plate-stg": "stg-cluster", "plate-prod": "staging-east"})
    service.command("deploy prod 1.5.0")
    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()
    request = service.runtime.store.get(service.request_ids()[0])
    calls_before = len(recorded_argv(helm_state))
    service.click("plate_approve", request.id, user="U0ALICE")
    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()
    status = status_message(service, "deploy prod")
    assert ":x: Cluster check" in status and "staging-east" in status and "allowed_cluster_names" in status
    assert len(recorded_argv(helm_state)) == calls_before  # not a single helm call after the refusal


def test_cluster_identity_pin_mismatch_refuses(service, cluster, helm_bin, helm_state, plate_env) -> None:
    write_config(plate_env, prod={"cluster_uid": "uid-of-the-real-prod"})
    reload_config(service, plate_env)
    approve_and_run(service, "deploy prod 1.5.0")
    status = status_message(service, "deploy prod")
    assert "cluster identity mismatch" in status and "uid-kube-system" in status
    assert deploy_argv(helm_state) == []


def test_failed_upgrade_reports_atomic_rollback_and_pod_events(service, cluster, helm_bin, helm_state) -> None:
    install(helm_bin, cluster)
    cluster.fail_images(r":9\.9\.9$", "Unauthorized")
    set_behaviour(helm_state, upgrade="atomic-rollback", timeout_seconds=1.5)
    approve_and_run(service, "deploy prod 9.9.9")
    status = status_message(service, "deploy prod")
    assert ":x: helm upgrade --install --atomic --wait" in status
    assert ":heavy_minus_sign: Rollout verification" in status
    text = thread_text(service)
    assert "`--atomic` rolled the release back: revision 3" in text
    assert "401 Unauthorized" in text and "`Failed`" in text and "pod/plate-web-" in text
    assert "helm said:" in text
    assert service.runtime.store.lock_holder("prod") is None
    assert [r["info"]["status"] for r in read_releases(helm_state, "plate-web", "plate-prod")][-1] == "deployed"


def test_crash_loop_after_helm_reports_rollout_failure_with_events(
    service, cluster, helm_bin, helm_state, plate_env
) -> None:
    write_config(plate_env, prod={"rollout_timeout": "2s"})
    reload_config(service, plate_env)
    install(helm_bin, cluster)
    cluster.fail_images(r":1\.6\.0$", "CrashLoopBackOff")
    approve_and_run(service, "deploy prod 1.6.0")
    status = status_message(service, "deploy prod")
    assert ":white_check_mark: helm upgrade" in status and ":x: Rollout verification" in status
    text = thread_text(service)
    assert "CrashLoopBackOff" in text and "Back-off restarting failed container" in text
    assert service.runtime.store.lock_holder("prod") is None


def test_dry_run_needs_no_approval_and_changes_nothing(service, cluster, helm_bin, helm_state) -> None:
    install(helm_bin, cluster)
    service.command("deploy prod 1.5.0 --dry-run")
    service.wait(lambda: service.runtime.queue.count == 1)
    request = service.runtime.store.get(service.request_ids()[0])
    assert request.approvals_required == 0 and request.status is Status.APPROVED
    service.run_worker()
    status = status_message(service, "deploy prod (dry run)")
    assert "succeeded" in status and "dry run accepted" in status
    [argv] = deploy_argv(helm_state)
    assert "--dry-run=server" in argv
    assert len(read_releases(helm_state, "plate-web", "plate-prod")) == 1
    assert "~ changed Deployment/plate-web" in thread_text(service)
    assert service.runtime.store.lock_holder("prod") is None


def test_nothing_to_change_closes_the_request_without_approval(service, cluster, helm_bin, helm_state) -> None:
    install(helm_bin, cluster, tag="1.4.0")
    service.command("deploy prod 1.4.0")
    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()
    request = service.runtime.store.get(service.request_ids()[0])
    assert request.status is Status.CANCELLED and "nothing would change" in request.reason
    card = json.dumps(service.slack.messages("C0DEPLOYS")[0].blocks)
    assert "nothing would change" in card and "Approve" not in card
    assert service.runtime.queue.count == 0


def test_stg_deploy_runs_at_once_and_reports_the_plan_in_the_thread(service, cluster, helm_state) -> None:
    service.command("deploy staging 1.4.1")
    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()
    status = status_message(service, "deploy stg")
    assert "deploy stg* — succeeded" in status and "First install" in thread_text(service)
    assert len(read_releases(helm_state, "plate-web", "plate-stg")) == 1
