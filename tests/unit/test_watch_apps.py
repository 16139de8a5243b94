"""The watcher and several apps per environment (issue 14): whose a workload is (its Helm release's app),
observations and incidents that name the app, keys that stay what they were, and the Request rollback
button aimed at the app."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from config.environments import parse_config
from workers.watcher.apps import AppIndex, Target, release_names
from workers.watcher.classify import EnvView, Reason, Workload
from workers.watcher.incidents import Incident, open_incident
from workers.watcher.render import change_message, resolution_reply, root_message

NOW = 1_800_000_000.0
CONFIG = parse_config(
    {
        "environments": {
            "prod": {
                "namespace": "plate-prod",
                "channels": ["C0DEPLOYS"],
                "incident_channel": "C0INCIDENTS",
                "apps": {
                    "plate-web": {"chart": "web", "argocd_app": "plate-web-prod"},
                    "plate-api": {"chart": "api", "argocd_app": "plate-api-prod"},
                    "plate-jobs": {"chart": "jobs", "namespace": "plate-jobs", "release": "jobs"},
                },
            },
            "stg": {"namespace": "plate-stg", "release": "plate-web", "chart": "web"},
        }
    }
)
INDEX = AppIndex(CONFIG.environments.values())


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(ns: str = "plate-prod", instance: str | None = None, release: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"namespace": ns, "labels": {}, "annotations": {}}
    if instance:
        out["labels"]["app.kubernetes.io/instance"] = instance
    if release:
        out["annotations"]["meta.helm.sh/release-name"] = release
    return out


def crashing(name: str, ns: str, instance: str, rv: str = "1") -> dict[str, Any]:
    rs = name.rsplit("-", 1)[0]
    return {
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}", "resourceVersion": rv,
                     "labels": {"app.kubernetes.io/instance": instance, "pod-template-hash": rs.rsplit("-", 1)[1]},
                     "ownerReferences": [{"kind": "ReplicaSet", "name": rs, "controller": True}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
                   "containerStatuses": [{"name": "c", "ready": False, "restartCount": 4,
                                          "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                                          "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                                                       "finishedAt": iso(NOW - 30)}}}]},
    }  # fmt: skip


def no_rs(_ns: str, _name: str) -> None:
    return None  # the pod-template-hash naming rule finds the Deployment


# --- whose a workload is -------------------------------------------------------------------------------------


def test_a_workload_is_its_helm_releases_app() -> None:
    assert INDEX.owner("", meta(instance="plate-api")) == ()  # another cluster: nobody's
    assert INDEX.owner(None, meta(instance="plate-api")) == (Target("prod", "plate-api"),)
    # helm's own annotation first: Argo CD may have rewritten the instance label of top-level objects.
    assert INDEX.owner(None, meta(instance="plate-web-prod", release="plate-web")) == (Target("prod", "plate-web"),)
    assert INDEX.owner(None, meta(instance="plate-api-prod")) == (Target("prod", "plate-api"),)  # Argo's label
    # Another namespace: the app there, and a scope that keeps its incident keys apart.
    assert INDEX.owner(None, meta("plate-jobs", instance="jobs")) == (Target("prod", "plate-jobs", "plate-jobs/"),)
    # The release must live in that namespace: plate-api in plate-jobs is no app's.
    assert INDEX.owner(None, meta("plate-jobs", instance="plate-api")) == (Target("prod", "", "plate-jobs/"),)
    assert INDEX.owner(None, meta(instance="someone-else")) == (Target("prod", ""),)
    assert INDEX.owner(None, meta()) == (Target("prod", ""),)
    assert INDEX.owner(None, meta("plate-stg", instance="plate-web")) == (Target("stg", "plate-web"),)
    assert INDEX.owner(None, meta("kube-system", instance="plate-web")) == ()
    annotated = meta("plate-prod", release="jobs")
    annotated["annotations"]["meta.helm.sh/release-namespace"] = "plate-jobs"
    assert release_names(annotated) == [("plate-jobs", "jobs")]
    assert INDEX.owner(None, annotated) == (Target("prod", "plate-jobs", "plate-jobs/"),)


def test_applications_belong_to_the_apps_naming_them() -> None:
    def application(name: str, dest: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "namespace": "argocd"}, "spec": {"destination": {"namespace": dest}}}

    assert INDEX.application(None, application("plate-api-prod", "plate-prod")) == (Target("prod", "plate-api"),)
    assert INDEX.application(None, application("unknown", "plate-prod")) == ()
    # stg names no Application: the one deploying into its namespace is its (one) app's.
    assert INDEX.application(None, application("whatever", "plate-stg")) == (Target("stg", "plate-web"),)
    assert set(INDEX.namespaces()) == {(None, "plate-prod"), (None, "plate-jobs"), (None, "plate-stg")}
    assert INDEX.argocd_namespaces() == [(None, "argocd")]
    assert [ref.key for ref in INDEX.releases_in(None, "plate-prod")["plate-api"]] == ["prod/plate-prod/plate-api"]
    assert [ref.label for ref in INDEX.releases_in(None, "plate-stg")["plate-web"]] == ["stg"]


# --- observations and incidents name the app -----------------------------------------------------------------


def test_one_view_per_namespace_routes_each_workload_to_its_app() -> None:
    view = EnvView("", "plate-prod", router=INDEX.router(None))
    [api] = view.apply("pods", "ADDED", crashing("plate-api-5d8f-x1", "plate-prod", "plate-api"), NOW, no_rs)
    assert (api.env, api.app, api.key) == ("prod", "plate-api", "prod:Deployment/plate-api:crash_loop")
    [web] = view.apply("pods", "ADDED", crashing("plate-web-7c9b-x2", "plate-prod", "plate-web"), NOW, no_rs)
    assert (web.app, web.key) == ("plate-web", "prod:Deployment/plate-web:crash_loop")
    [other] = view.apply("pods", "ADDED", crashing("tool-1a2b-x3", "plate-prod", "tool"), NOW, no_rs)
    assert (other.env, other.app) == ("prod", "")
    event = {"metadata": {"name": "ev1", "namespace": "plate-prod", "resourceVersion": "5"},
             "involvedObject": {"kind": "Pod", "name": "plate-api-5d8f-x1"}, "type": "Warning", "reason": "BackOff",
             "message": "Back-off restarting failed container", "count": 2, "lastTimestamp": iso(NOW)}  # fmt: skip
    [again] = view.apply("events", "ADDED", event, NOW, no_rs)
    assert (again.app, again.key) == ("plate-api", api.key)
    jobs = EnvView("", "plate-jobs", router=INDEX.router(None))
    [job] = jobs.apply("pods", "ADDED", crashing("jobs-9f8e-x1", "plate-jobs", "jobs"), NOW, no_rs)
    assert (job.app, job.key) == ("plate-jobs", "prod:plate-jobs/Deployment/jobs:crash_loop")
    argo = EnvView("", "argocd", router=INDEX.router(None))
    degraded = {"metadata": {"name": "plate-api-prod", "namespace": "argocd", "resourceVersion": "1"},
                "status": {"health": {"status": "Degraded"}}}  # fmt: skip
    [app] = argo.apply("applications", "ADDED", degraded, NOW, no_rs)
    assert (app.app, app.key) == ("plate-api", "prod:Application/plate-api-prod:argocd_degraded")


def test_without_a_router_a_view_is_one_environments_as_before() -> None:
    [obs] = EnvView("prod", "plate-prod").apply("pods", "ADDED", crashing("w-1a-x", "plate-prod", "w"), NOW, no_rs)
    assert (obs.env, obs.app, obs.scope, obs.key) == ("prod", "", "", "prod:Deployment/w:crash_loop")


def test_the_incident_names_its_app_which_is_stored_only_when_known() -> None:
    view = EnvView("", "plate-prod", router=INDEX.router(None))
    [obs] = view.apply("pods", "ADDED", crashing("plate-api-5d8f-x1", "plate-prod", "plate-api"), NOW, no_rs)
    inc = open_incident(obs, NOW, channel="C0INCIDENTS", production=True)
    assert inc.app == "plate-api" and json.loads(inc.for_storage())["app"] == "plate-api"
    assert Incident.from_storage(inc.for_storage()) == inc
    nobody = inc.evolve(app="")
    assert "app" not in json.loads(nobody.for_storage())  # the shape older watchers read
    # An incident opened before its app was known learns it from a later observation.
    assert nobody.observed(obs, NOW + 1).app == "plate-api"
    assert nobody.observed(obs._replace(app=""), NOW + 1).app == ""


def test_messages_name_the_app_and_the_rollback_button_targets_it() -> None:
    obs_key = "prod:Deployment/plate-api:crash_loop"
    inc = Incident(key=obs_key, env="prod", namespace="plate-prod", app="plate-api", kind="Deployment",
                   name="plate-api", reason=Reason.CRASH_LOOP, severity="critical", channel="C0INCIDENTS",
                   detail="c CrashLoopBackOff", source="pod/plate-api-1", first_seen=NOW, last_seen=NOW)  # fmt: skip
    text, blocks = root_message(inc, "prod/plate-api")
    assert text == "[critical] prod/plate-api: Crash loop — Deployment/plate-api"
    assert blocks is not None
    assert "*Crash loop* in `prod/plate-api`: `Deployment/plate-api`" in blocks[0]["text"]["text"]
    assert root_message(inc)[0] == "[critical] prod: Crash loop — Deployment/plate-api"  # no label: the env
    assert "in `prod/plate-api` is healthy again" in resolution_reply(inc, "prod/plate-api")
    _text, change = change_message(["Helm revision 4"], "prod/plate-api")
    assert change is not None
    button = change[1]["elements"][0]
    assert (button["action_id"], button["value"]) == ("plate_request_rollback", "prod/plate-api")
    assert "`/plate rollback prod plate-api`" in change[2]["elements"][0]["text"]
    _text, single = change_message(["Helm revision 4"], "prod")
    assert single is not None and single[1]["elements"][0]["value"] == "prod"
    assert Workload("Deployment", "plate-api", "plate-prod") == Workload(inc.kind, inc.name, inc.namespace)
