"""App Home end to end: signed `app_home_opened` events and Home-tab clicks into the running app, jobs
drained by a real RQ worker, the published views read back from the fake Slack."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from core.requests import Status
from sandbox.cluster import SimulatedCluster
from sandbox.helm import recorded_argv
from sandbox.signing import home_action_body, home_opened_body, post, sign
from tests.conftest import ROOT, SIGNING_SECRET, Service

CHART = ROOT / "examples" / "plate-web"


def install_by_hand(helm_bin: Path, cluster: SimulatedCluster, description: str = "Install complete") -> None:
    values = CHART / "values-production.yaml"
    subprocess.run(
        [str(helm_bin), "upgrade", "--install", "plate-web", str(CHART), "-f", str(values), "--set-string",
         "image.tag=1.4.0", "--description", description, "--kube-context", "plate-prod", "-n", "plate-prod"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    cluster.settle()


def open_home(service: Service, user: str) -> int:
    body = home_opened_body(user)
    status, _h, _b = post(service.url, body, sign(SIGNING_SECRET, body))
    return status


def click_on_home(service: Service, action: str, request_id: str, user: str) -> int:
    body = home_action_body(action, request_id, user=user)
    status, _h, _b = post(service.url, body, sign(SIGNING_SECRET, body))
    return status


def publishes(service: Service, user: str) -> int:
    return len([c for c in service.slack.calls_to("views.publish") if c.params.get("user_id") == user])


def home(service: Service, user: str) -> str:
    """The user's Home tab as published last, as JSON text."""
    return json.dumps(service.slack.home_views[user]["blocks"], ensure_ascii=False)


def buttons(service: Service, user: str) -> list[tuple[str, str]]:
    blocks = service.slack.home_views[user]["blocks"]
    return [(e["action_id"], e["value"]) for b in blocks if b["type"] == "actions" for e in b["elements"]]


def planned_prod_deploy(service: Service, text: str = "deploy prod 1.5.0") -> str:
    known = set(service.request_ids())
    service.command(text)
    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()  # the plan job: the request gets its plan and becomes approvable
    [request_id] = set(service.request_ids()) - known
    request = service.runtime.store.get(request_id)
    assert request is not None and request.planned and request.status is Status.PENDING, service.slack.dump()
    return request_id


def test_home_shows_what_jobs_recorded_and_is_refreshed_when_a_job_ends(
    service: Service, cluster: SimulatedCluster, helm_bin: Path, helm_state: Path
) -> None:
    install_by_hand(helm_bin, cluster, description="plate-bot 0123456789ab by U0DAVE")  # a deploy by plate-bot
    helm_calls = len(recorded_argv(helm_state))
    assert open_home(service, "U0ALICE") == 200
    service.wait(lambda: "U0ALICE" in service.slack.home_views)
    first = home(service, "U0ALICE")
    assert "*prod* · release `plate-web` in `plate-prod`" in first and "*stg*" in first
    assert "No release seen yet" in first and "Not locked" in first
    assert len(recorded_argv(helm_state)) == helm_calls  # opening Home never runs helm

    service.command("status prod")
    service.wait(lambda: service.runtime.queue.count == 1)
    service.wait(lambda: publishes(service, "U0ALICE") == 2)  # a new request is a change: recent viewers see it
    service.run_worker()  # the job records the release and the operation, then refreshes recent viewers
    assert publishes(service, "U0ALICE") == 3
    after = home(service, "U0ALICE")
    assert "*revision 1* · `plate-web-1.4.0` · image `1.4.0` · deployed" in after, after
    assert "by <@U0DAVE>" in after.split("revision 1", 1)[1]  # who deployed it: helm's description
    assert ":white_check_mark: *status* by <@U0BOB>" in after
    card = service.slack.messages("C0DEPLOYS")[0]
    assert f"<https://fake.slack.com/archives/C0DEPLOYS/p{card.ts.replace('.', '')}|thread>" in after
    assert "U0EVE" not in service.slack.home_views  # nobody who has not opened Home gets views published


def test_pending_request_buttons_only_for_approvers_and_approve_from_home(
    service: Service, cluster: SimulatedCluster, helm_bin: Path
) -> None:
    install_by_hand(helm_bin, cluster)
    for user in ("U0ALICE", "U0EVE", "U0BOB", "U0CAROL"):  # CAROL approves through the S0SRE group
        open_home(service, user)
    service.wait(lambda: len(service.slack.home_views) == 4)
    request_id = planned_prod_deploy(service)  # the plan job's end refreshes every recent viewer
    service.wait(lambda: "waiting for prod" in home(service, "U0EVE") and "deploy" in home(service, "U0CAROL"))
    assert "requested by" not in home(service, "U0EVE")  # not an approver of prod: only how many wait
    pending = home(service, "U0ALICE")
    assert ":raised_hand: *deploy* `1.5.0` requested by <@U0BOB> · needs 1 more approval" in pending
    assert buttons(service, "U0ALICE") == [("plate_approve", request_id), ("plate_reject", request_id)]
    assert buttons(service, "U0CAROL") == [("plate_approve", request_id), ("plate_reject", request_id)]
    assert buttons(service, "U0EVE") == []  # not an approver of prod
    assert buttons(service, "U0BOB") == [] and "Your request: waiting for an approver." in home(service, "U0BOB")

    before = publishes(service, "U0BOB")
    assert click_on_home(service, "plate_approve", request_id, "U0BOB") == 200  # the requester, on Home
    service.wait(lambda: publishes(service, "U0BOB") > before)
    assert "You cannot approve your own request" in home(service, "U0BOB")
    assert service.runtime.store.get(request_id).status is Status.PENDING
    assert service.slack.ephemerals() == []  # no channel to answer in: the answer went onto Home

    assert click_on_home(service, "plate_approve", request_id, "U0ALICE") == 200
    service.wait(lambda: service.runtime.queue.count == 1)
    request = service.runtime.store.get(request_id)
    assert request.status is Status.APPROVED and [v.user for v in request.approvals] == ["U0ALICE"]
    card = service.slack.messages("C0DEPLOYS")[0]
    service.wait(lambda: "Approved by <@U0ALICE>" in json.dumps(service.slack.messages("C0DEPLOYS")[0].blocks))
    assert card.ts == request.message_ts  # the channel card is edited although the click came from Home
    service.wait(lambda: ":lock: Locked by" in home(service, "U0ALICE"))
    locked = home(service, "U0ALICE")
    assert f"`{request_id}`: deploy requested by <@U0BOB>, queued since" in locked
    assert buttons(service, "U0ALICE") == [] and ":raised_hand:" not in locked

    service.run_worker()  # the deploy records the new release and the operation, and refreshes Home
    deployed = home(service, "U0ALICE")
    assert "*revision 2* · `plate-web-1.4.0` · image `1.5.0` · deployed" in deployed, deployed
    assert "by <@U0BOB>" in deployed.split("revision 2", 1)[1]
    assert ":white_check_mark: *deploy* by <@U0BOB>" in deployed and "revision 2 deployed" in deployed
    assert "Not locked" in deployed and "*revision 2*" in home(service, "U0EVE")  # every recent viewer


def test_home_of_a_reader_outside_home_tab_is_left_alone(service: Service) -> None:
    """`app_home_opened` also fires for the Messages tab: nothing is published or remembered then."""
    body = json.loads(home_opened_body("U0ALICE"))
    body["event"]["tab"] = "messages"
    raw = json.dumps(body)
    status, _h, _b = post(service.url, raw, sign(SIGNING_SECRET, raw))
    assert status == 200
    service.command("status stg")  # a change that refreshes recent viewers: there are none
    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()
    assert service.slack.calls_to("views.publish") == []
