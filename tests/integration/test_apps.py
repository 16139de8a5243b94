"""Several apps per environment, end to end through the real service: signed commands, a real Redis, real
RQ workers forking jobs, the fake helm applying manifests to the loopback Kubernetes API, a simulated
cluster rolling pods out. Two apps (plate-web, plate-api) share each environment's namespace."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.requests import Request, Status
from sandbox.helm import read_releases
from tests.conftest import ROOT, Service
from tests.integration.releases import (
    approve_and_run,
    card,
    ephemeral_texts,
    newest_request,
    sim_fixture,  # noqa: F401 - the `sim` fixture
    thread,
)

WEB, API = ROOT / "examples" / "plate-web", ROOT / "examples" / "plate-api"


def apps_config() -> dict[str, Any]:
    def apps(stage: str) -> dict[str, Any]:
        return {
            "plate-web": {"chart": str(WEB), "values": [str(WEB / f"values-{stage}.yaml")]},
            "plate-api": {"chart": str(API), "values": [str(API / f"values-{stage}.yaml")]},
        }

    return {
        "incident_channel": "C0INCIDENTS",
        "environments": {
            "stg": {"kube_context": "plate-stg", "namespace": "plate-stg", "default_app": "plate-web",
                    "apps": apps("staging")},
            "prod": {"kube_context": "plate-prod", "namespace": "plate-prod", "approvals_required": 1,
                     "approvers": ["U0ALICE", "S0SRE"], "channels": ["C0DEPLOYS"], "helm_timeout": "2m",
                     "apps": {**apps("production"), "plate-api": {**apps("production")["plate-api"],
                                                                   "readers": ["S0SRE"]}}},
        },
    }  # fmt: skip


@pytest.fixture
def two_apps(plate_env: dict[str, Any]) -> dict[str, Any]:
    """Listed before `service`: the environments file is written before the service reads it."""
    Path(plate_env["config_path"]).write_text(yaml.safe_dump(apps_config()))
    return plate_env


def ask(service: Service, text: str, user: str = "U0BOB") -> str:
    status, body = service.command(text, user=user)
    assert status == 200
    return body.decode()


def created(service: Service, count: int) -> list[Request]:
    service.wait(lambda: len(service.request_ids()) >= count, what=f"{count} requests")
    requests = [service.runtime.store.get(i) for i in service.request_ids()]
    return sorted((r for r in requests if r is not None), key=lambda r: r.created_at)


def revisions(helm_state: Path, release: str, ns: str = "plate-stg") -> list[int]:
    return [int(r["version"]) for r in read_releases(helm_state, release, ns)]


def test_two_apps_deploy_side_by_side_each_with_its_own_lock(two_apps, service: Service, sim, helm_state) -> None:
    """Both stg deploys are queued at once (neither waits for the other); a second request for the app
    that is busy is refused; the card needs no approval and is posted once, without buttons."""
    assert ask(service, "deploy stg 1.4.0") == ""  # the default app, plate-web
    assert ask(service, "deploy stg plate-api 2.1.0") == ""
    web, api = created(service, 2)
    assert (web.app, api.app) == ("plate-web", "plate-api")
    assert web.lock == "stg/plate-stg/plate-web" and api.lock == "stg/plate-stg/plate-api"
    service.wait(lambda: service.runtime.queue.count == 2, what="both jobs queued")
    held = {service.runtime.store.lock_holder(r.lock)["request"] for r in (web, api)}  # type: ignore[index]
    assert held == {web.id, api.id}
    busy = ask(service, "deploy stg plate-web 1.5.0")
    assert "`stg/plate-web` is busy" in busy and web.id not in busy  # the holder is named by verb and user
    assert len(service.request_ids()) == 2
    # No-approval cards: posted in their final state, never edited, never "needs approval".
    posts = service.slack.calls_to("chat.postMessage")
    cards = [c for c in posts if "thread_ts" not in c.params]
    assert [c.params["text"] for c in cards] == [
        "deploy stg/plate-web queued by <@U0BOB>",
        "deploy stg/plate-api queued by <@U0BOB>",
    ]
    for c in cards:
        assert "plate_approve" not in json.dumps(c.params.get("blocks")) and "needs" not in str(c.params)
    card_ts = {m.ts for m in service.slack.messages("C0DEPLOYS") if m.thread_ts is None}
    assert not [c for c in service.slack.calls_to("chat.update") if c.params.get("ts") in card_ts]
    service.run_worker()
    sim.settle()
    for request in (web, api):
        assert "succeeded" in thread(service, service.runtime.store.get(request.id)), service.slack.dump()
    assert revisions(helm_state, "plate-web") == [1] and revisions(helm_state, "plate-api") == [1]


def test_rollback_of_one_app_leaves_the_other_untouched(two_apps, service: Service, sim, helm_state) -> None:
    for text in ("deploy stg plate-api 2.1.0", "deploy stg plate-web 1.4.0"):
        ask(service, text)
        service.wait(lambda: service.runtime.queue.count == 1)
        service.run_worker()
        sim.settle()
    ask(service, "deploy stg plate-api 2.2.0")
    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()
    sim.settle()
    assert revisions(helm_state, "plate-api") == [1, 2] and revisions(helm_state, "plate-web") == [1]
    ask(service, "rollback stg plate-api 1")
    service.wait(lambda: service.runtime.queue.count >= 1)
    service.run_worker()  # the target check, then (no approval in stg) the rollback itself
    service.wait(lambda: service.runtime.queue.count == 0)
    rollback = newest_request(service)
    assert (rollback.verb, rollback.app, rollback.status) == ("rollback", "plate-api", Status.APPROVED)
    assert "succeeded" in thread(service, rollback), service.slack.dump()
    assert revisions(helm_state, "plate-api") == [1, 2, 3] and revisions(helm_state, "plate-web") == [1]
    # Reads name their app: status and history of each are its own.
    for app, tag in (("plate-web", "1.4.0"), ("plate-api", "2.1.0")):
        ask(service, f"status stg {app}")
        service.wait(lambda: service.runtime.queue.count == 1)
        service.run_worker()
        status = newest_request(service)
        assert status.app == app and f"status stg/{app}" in thread(service, status)
        ask(service, f"history stg {app}")
        service.wait(lambda: service.runtime.queue.count == 1)
        service.run_worker()
        history = thread(service, newest_request(service))
        assert f"`{app}`" in history and tag in history, history
    api_history = thread(service, newest_request(service))
    assert "plate-web" not in api_history.replace("history stg/plate-api", "")


def test_prod_app_needs_approval_and_a_busy_app_refuses_a_second_request(two_apps, service: Service, sim) -> None:
    ask(service, "deploy prod plate-api 2.1.0")
    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()  # the plan
    request = service.wait(lambda: (r := newest_request(service)).planned and r.plan_digest and r)
    assert "*App:* `plate-api`" in card(service, request) and "Approve" in card(service, request)
    done = approve_and_run(service, request)
    assert done.status is Status.APPROVED
    sim.settle()
    assert "succeeded" in thread(service, done), service.slack.dump()


def test_readers_limit_who_may_read_an_app(two_apps, service: Service) -> None:
    """prod's plate-api has `readers: [S0SRE]`: Bob (not in the group) is refused, Carol (in it) is not;
    plate-web keeps the default (everyone)."""
    refused = ask(service, "status prod plate-api")
    assert "not in the `readers` of `prod/plate-api`" in refused
    assert service.request_ids() == []
    assert ask(service, "status prod plate-api", user="U0CAROL") == ""
    assert ask(service, "status prod plate-web") == ""
    assert len(created(service, 2)) == 2
    entries = service.runtime.store.audit_entries(10)
    assert any(e.get("event") == "request.refused" and "readers" in e.get("detail", "") for e in entries)


def test_apps_lists_every_app_with_its_lock_and_a_command_naming_none_uses_the_default(
    two_apps, service: Service, sim
) -> None:
    ask(service, "deploy stg plate-api 2.1.0")
    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()
    sim.settle()
    ask(service, "status stg plate-api")  # records the live release for Home and `/plate apps`
    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()
    ask(service, "deploy stg 1.4.0")  # queued, not run: plate-web's lock is held
    service.wait(lambda: service.runtime.queue.count == 1)
    reply = json.loads(ask(service, "apps"))
    text = json.dumps(reply["blocks"], ensure_ascii=False)
    assert "*stg* · 2 apps in `plate-stg`" in text and "*prod* · 2 apps" in text
    assert "`plate-api` :large_green_circle: rev 1 · `2.1.0` · deployed" in text
    assert "`plate-web` _not seen yet_ · :lock: deploy by <@U0BOB>" in text
    assert len(reply["blocks"]) <= 50
    one = json.loads(ask(service, "apps prod"))
    assert "*stg*" not in json.dumps(one["blocks"])
    assert "Which app of" not in ask(service, "help")
    assert "Apps of `prod`: `plate-api`, `plate-web`" in ask(service, "help")  # the file's order (sorted here)


def test_an_environment_of_several_apps_without_a_default_asks_which(two_apps, service: Service) -> None:
    reply = ask(service, "deploy prod 1.5.0")
    assert "Which app of `prod`? It has `plate-api`, `plate-web`" in reply
    assert service.request_ids() == [] and ephemeral_texts(service, "U0BOB") == []
