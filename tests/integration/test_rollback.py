"""`/plate rollback` end to end: signed command → the target check against helm history (a real worker)
→ the card with live → target → approval → the rollback job (fake helm applying manifests to the
loopback API, a simulated cluster rolling pods out) → the thread."""

from __future__ import annotations

import json

from core.requests import Status
from sandbox.helm import read_releases, recorded_argv, set_behaviour
from tests.conftest import Service
from tests.integration.releases import (
    approve_and_run,
    by_hand,
    card,
    command_and_check,
    configure,
    ephemeral_texts,
    reload,
    sim_fixture,  # noqa: F401 - the `sim` fixture
    thread,
)

APP_AUTOMATED = {"prune": True, "selfHeal": True}
APP = {
    "apiVersion": "argoproj.io/v1alpha1",
    "kind": "Application",
    "metadata": {"name": "plate-web-prod", "namespace": "argocd"},
    "spec": {
        "source": {"repoURL": "https://git.example.com/plate/deploy.git", "targetRevision": "main"},
        "syncPolicy": {"automated": APP_AUTOMATED, "retry": {"limit": 2}},
    },
}


def make_revisions(helm_bin, sim, *tags: str, extra: tuple[str, ...] = ()) -> None:
    for tag in tags:
        by_hand(helm_bin, "prod", tag, *extra)
    sim.settle()


def with_argocd(plate_env, service: Service, kube_api) -> None:
    """prod names the seed's Argo CD Application, which syncs automatically."""
    configure(plate_env, prod={"argocd_app": "plate-web-prod"})
    reload(service, plate_env)
    kube_api.put(APP)


def live_image(kube_api) -> str:
    deployment = kube_api.get("apps/v1", "Deployment", "plate-web", "plate-prod")
    return deployment["spec"]["template"]["spec"]["containers"][0]["image"]


def test_rollback_to_the_previous_good_revision_after_a_second_persons_approval(
    plate_env, service: Service, sim, kube_api, helm_bin, helm_state
) -> None:
    """The card warns about Argo CD's auto-sync and offers to pause it; a plain Approve leaves it on."""
    with_argocd(plate_env, service, kube_api)
    make_revisions(helm_bin, sim, "1.4.0", "1.5.0", "1.5.1")
    status, body = service.command("rollback prod")
    assert status == 200 and body == b""
    service.wait(lambda: service.slack.messages("C0DEPLOYS"))
    first = json.dumps(service.slack.messages("C0DEPLOYS")[0].blocks)
    assert "Checking the target revision" in first and "Approve" not in first and "Cancel" in first

    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()  # the check: helm history, both manifests, records, backups
    request = service.runtime.store.get(service.request_ids()[0])
    assert request.planned and request.plan_digest and request.status is Status.PENDING
    shown = card(service, request)
    for expected in (
        "revision *3* (live) → revision *2*",
        "*Live* revision 3 · chart plate-web-1.4.0 · app 1.4.0 · image `1.5.1`",
        "*Target* revision 2 · chart plate-web-1.4.0 · app 1.4.0 · image `1.5.0`",
        "(superseded)",
        "*Target deployed by:* outside plate-bot",
        "*plate-bot backup of revision 2:* none",
        request.plan_digest[:12],
        "Argo CD Application `plate-web-prod` (namespace `argocd`) syncs automatically (prune, selfHeal)",
        "redeploy git's version over this rollback unless auto-sync is paused",
        "Approve and pause auto-sync",
        "Approve (auto-sync stays on)",
        "Reject",
    ):
        assert expected in shown, shown

    # Same two-person rule as deploy: the requester and a non-approver change nothing.
    service.click("plate_approve", request.id, user="U0BOB")
    service.click("plate_approve", request.id, user="U0EVE")
    service.wait(lambda: ephemeral_texts(service, "U0BOB") and ephemeral_texts(service, "U0EVE"))
    assert "cannot approve your own request" in ephemeral_texts(service, "U0BOB")[0]
    assert "not an approver" in ephemeral_texts(service, "U0EVE")[0]
    assert service.runtime.store.get(request.id).status is Status.PENDING and service.runtime.queue.count == 0

    request = approve_and_run(service, request, approver="U0CAROL")
    text = thread(service, request)
    assert "rollback prod* — succeeded" in text, text
    for step in ("Cluster check", "as approved", "Backup of the current release", "helm rollback --wait", "pods Ready"):
        assert step in text, text
    assert "rolled back to revision 2 (now revision 4, image `1.5.0`)" in text
    assert "Release `plate-web` revision 4: *deployed*" in text  # the status summary reply
    rollbacks = [a for a in recorded_argv(helm_state) if a[0] == "rollback"]
    assert rollbacks == [
        [
            "rollback",
            "plate-web",
            "2",
            "--wait",
            "--timeout",
            "120s",
            "--kube-context",
            "plate-prod",
            "-n",
            "plate-prod",
        ]
    ]
    revisions = read_releases(helm_state, "plate-web", "plate-prod")
    assert [(r["version"], r["info"]["status"]) for r in revisions][-1] == (4, "deployed")
    assert revisions[-1]["info"]["description"] == "Rollback to 2"
    assert live_image(kube_api).endswith(":1.5.0")
    assert service.runtime.store.backup_revisions("prod") == [3]  # the state before the rollback
    assert service.runtime.store.lock_holder("prod") is None
    assert "still syncs automatically (not paused, as approved)" in text
    app = kube_api.get("argoproj.io/v1alpha1", "Application", "plate-web-prod", "argocd")
    assert app["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}


def test_explicit_revision_without_approval_names_who_deployed_the_target(
    service: Service, sim, kube_api, helm_bin, helm_state
) -> None:
    """stg needs no approval: the job checks the target itself. Revision 1 was deployed by plate-bot, so
    the thread says who asked for it; revision 2 was made by hand."""
    service.command("deploy stg 1.4.0")
    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()
    sim.settle()
    by_hand(helm_bin, "stg", "1.5.0")
    sim.settle()
    service.slack.reset()

    request = command_and_check(service, "rollback stg 1", user="U0DAVE")
    text = thread(service, request)
    assert "rollback stg* — succeeded" in text, text
    assert "revision *2* (live) → revision *1*" in text
    assert "*Target deployed by:* plate-bot deploy 1.4.0, requested by <@U0BOB>, no approval needed" in text
    assert "*plate-bot backup of revision 1:* none" in text
    assert "*plate-bot backup of revision 2:* none" not in text
    stg = kube_api.get("apps/v1", "Deployment", "plate-web", "plate-stg")
    assert stg["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":1.4.0")
    assert [a[:3] for a in recorded_argv(helm_state) if a[0] == "rollback"] == [["rollback", "plate-web", "1"]]

    # Without a card to close, an invalid target fails the job, and the requester is told directly.
    request = command_and_check(service, "rollback stg 9", user="U0DAVE")
    text = thread(service, request)
    assert "rollback stg* — failed" in text and "revision 9 does not exist (the newest is 3)" in text
    assert "revision 9 does not exist (the newest is 3)" in ephemeral_texts(service, "U0DAVE")[-1]
    assert service.runtime.store.lock_holder("stg") is None
    assert len([a for a in recorded_argv(helm_state) if a[0] == "rollback"]) == 1


def test_invalid_revisions_are_refused_with_the_revisions_available(
    service: Service, sim, helm_bin, helm_state
) -> None:
    make_revisions(helm_bin, sim, "1.4.0", "1.5.0", "1.5.1", extra=("--history-max", "2"))  # helm keeps 2 and 3
    cases = [
        ("rollback prod 9", "revision 9 does not exist (the newest is 3)"),
        ("rollback prod 3", "revision 3 is the live revision"),
        ("rollback prod 1", "revision 1 is outside helm's kept history (it keeps 2 revisions, the oldest is 2)"),
    ]
    for text, reason in cases:
        request = command_and_check(service, text)
        assert request.status is Status.CANCELLED and request.reason == reason, request
        closed = card(service, request)
        assert "Closed at" in closed and reason in closed and "Nothing was run" in closed
        assert "Approve" not in closed
        told = ephemeral_texts(service, "U0BOB")[-1]
        assert f"I cannot roll back `prod`: {reason}. Nothing was run." in told
        assert "Revisions you can roll back to" in told and "`2` superseded" in told
        assert "`3`" not in told.split("newest first):", 1)[1]  # the live one is not offered
    assert service.runtime.queue.count == 0 and service.runtime.store.lock_holder("prod") is None
    assert not [a for a in recorded_argv(helm_state) if a[0] == "rollback"]


def test_release_changed_after_approval_is_refused(service: Service, sim, helm_bin, helm_state) -> None:
    make_revisions(helm_bin, sim, "1.4.0", "1.5.0")
    request = command_and_check(service, "rollback prod")
    by_hand(helm_bin, "prod", "1.6.0")  # someone deploys between the check and the approval
    request = approve_and_run(service, request)
    text = thread(service, request)
    assert "the release changed since the approval" in text and "live 3" in text
    assert not [a for a in recorded_argv(helm_state) if a[0] == "rollback"]
    assert service.runtime.store.lock_holder("prod") is None


def test_failed_rollback_reports_helm_and_the_pods_events(
    service: Service, sim, kube_api, helm_bin, helm_state
) -> None:
    """The live revision pulls an image Harbor refuses; the rollback itself times out: the thread gets
    helm's error, the pods not Ready and their events, and the lock is free again."""
    by_hand(helm_bin, "prod", "1.4.0")
    sim.settle()
    sim.fail_images(r":9\.9\.9$", "Unauthorized")
    by_hand(helm_bin, "prod", "9.9.9")
    sim.settle()
    set_behaviour(helm_state, rollback="timeout", timeout_seconds=0.2)
    request = approve_and_run(service, command_and_check(service, "rollback prod"))
    text = thread(service, request)
    assert "rollback prod* — failed" in text, text
    assert "helm rollback failed" in text and "context deadline exceeded" in text
    assert "*Pods not Ready*" in text and ("ImagePullBackOff" in text or "ErrImagePull" in text)
    assert "*Pod events*" in text and "401 Unauthorized" in text
    assert read_releases(helm_state, "plate-web", "plate-prod")[-1]["info"]["status"] == "failed"
    assert service.runtime.store.lock_holder("prod") is None


def test_auto_sync_is_paused_when_the_approver_chooses_it(
    plate_env, service: Service, sim, kube_api, helm_bin, helm_state
) -> None:
    with_argocd(plate_env, service, kube_api)
    make_revisions(helm_bin, sim, "1.4.0", "1.5.0")
    request = approve_and_run(service, command_and_check(service, "rollback prod"), action="plate_approve_pause")
    assert "Argo CD auto-sync will be paused first" in card(service, request)
    text = thread(service, request)
    assert "rollback prod* — succeeded" in text, text
    assert "Paused auto-sync of Argo CD Application `plate-web-prod`" in text
    assert '{"prune": true, "selfHeal": true}' in text  # the old value, to restore it
    assert "kubectl -n argocd patch application plate-web-prod --type merge" in text
    app = kube_api.get("argoproj.io/v1alpha1", "Application", "plate-web-prod", "argocd")
    assert "automated" not in app["spec"]["syncPolicy"] and app["spec"]["syncPolicy"]["retry"] == {"limit": 2}
    # Paused before helm ran: the one PATCH of the Application precedes `helm rollback`.
    patches = [r for r in kube_api.requests if r.method == "PATCH" and "applications" in r.path]
    assert len(patches) == 1 and patches[0].headers["content-type"] == "application/json-patch+json"
    assert patches[0].body[0] == {"op": "test", "path": "/spec/syncPolicy/automated", "value": APP_AUTOMATED}


def test_dry_run_needs_no_approval_and_changes_nothing(service: Service, sim, helm_bin, helm_state) -> None:
    make_revisions(helm_bin, sim, "1.4.0", "1.5.0")
    request = command_and_check(service, "rollback prod 1 --dry-run")
    text = thread(service, request)
    assert "rollback prod (dry run)* — succeeded" in text, text
    assert "nothing was changed" in text
    assert ["--dry-run" in a for a in recorded_argv(helm_state) if a[0] == "rollback"] == [True]
    assert len(read_releases(helm_state, "plate-web", "plate-prod")) == 2


def test_pause_that_cannot_be_done_stops_before_helm(
    plate_env, service: Service, sim, kube_api, helm_bin, helm_state
) -> None:
    """Auto-sync was to be paused first; if the Application cannot be read any more, rolling back anyway
    would be undone by Argo CD: the job stops before `helm rollback` and frees the lock."""
    with_argocd(plate_env, service, kube_api)
    make_revisions(helm_bin, sim, "1.4.0", "1.5.0")
    request = command_and_check(service, "rollback prod")
    kube_api.fail("GET", r"/applications/plate-web-prod$", 403, times=None)
    request = approve_and_run(service, request, action="plate_approve_pause")
    text = thread(service, request)
    assert "rollback prod* — failed" in text and "cannot pause auto-sync as approved" in text, text
    assert "403 Forbidden" in text
    assert not [a for a in recorded_argv(helm_state) if a[0] == "rollback"]
    assert service.runtime.store.lock_holder("prod") is None
