"""Two bot replicas and two worker processes on one Redis, with concurrent requests for three
environments: every environment lock is respected and every accepted job runs exactly once."""

from __future__ import annotations

import itertools
import threading
from collections import Counter, defaultdict
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.requests import Status
from sandbox.helm import recorded_argv
from sandbox.signing import action_body, post, sign, slash_body
from tests.conftest import SIGNING_SECRET, Service, plate_config
from tests.faults.conftest import running_service
from tests.waiting import wait_until

pytestmark = pytest.mark.faults
ENVS = ("stg", "dev")  # plus prod: three environments


def _three_environments(plate_env: dict[str, Any], kube_api) -> None:
    config = plate_config()
    for name in ENVS[1:]:
        stg = config["environments"]["stg"]
        config["environments"][name] = {
            **stg,
            "aliases": [],
            "kube_context": f"plate-{name}",
            "namespace": f"plate-{name}",
        }
    Path(plate_env["config_path"]).write_text(yaml.safe_dump(config))
    kube_api.write_kubeconfig(plate_env["KUBECONFIG"], {f"plate-{e}": f"{e}-cluster" for e in (*ENVS, "prod")})


def _concurrently(calls: list[Any]) -> None:
    threads = [threading.Thread(target=c) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _command(replica: Service, text: str, user: str, trigger: str) -> None:
    body = slash_body(text, user=user, trigger_id=trigger, response_url=replica.slack.response_url(user, user=user))
    status, _h, data = post(replica.url, body, sign(SIGNING_SECRET, body))
    assert status == 200, data


def _click(replica: Service, request_id: str, user: str) -> None:
    body = action_body("plate_approve", request_id, user=user, response_url=replica.slack.response_url(user, user=user))
    assert post(replica.url, body, sign(SIGNING_SECRET, body))[0] == 200


def _settled(a: Service) -> bool:
    from rq.registry import StartedJobRegistry

    registry = StartedJobRegistry(queue=a.runtime.queue, job_class=a.runtime.queue.job_class)
    return a.runtime.queue.count == 0 and registry.count == 0


def test_two_replicas_two_workers_three_environments(plate_env, fake_slack, kube_api, cluster, workers, helm_state):
    """Six concurrent `deploy` commands for stg and dev across two replicas, and two prod requests
    approved at the same moment on different replicas. Holds: per environment, no two jobs overlap in
    time; every approved request's helm upgrade ran exactly once; every other request was refused
    with "busy" (nothing run); all locks are free at the end."""
    _three_environments(plate_env, kube_api)
    with running_service(fake_slack) as a, running_service(fake_slack) as b:
        replicas = itertools.cycle((a, b))
        started = [workers(), workers()]
        logs = lambda: "\n".join(w.output()[-3000:] for w in started)  # noqa: E731 - shown when an assert fails
        sends = [(next(replicas), env, n) for n, env in enumerate(ENVS * 3)]
        _concurrently([partial(_command, r, f"deploy {e} 1.5.{n}", f"U0U{n}", f"t-{e}-{n}") for r, e, n in sends])
        _command(a, "deploy prod 1.6.0", "U0BOB", "t-prod-1")
        _command(b, "deploy prod 1.6.1", "U0DAVE", "t-prod-2")
        prod = wait_until(lambda: _planned_prod(a), 30, "both prod plans")
        _concurrently([lambda: _click(a, prod[0], "U0ALICE"), lambda: _click(b, prod[1], "U0CAROL")])
        wait_until(
            lambda: _settled(a) and all(a.runtime.store.lock_holder(e) is None for e in (*ENVS, "prod")),
            60,
            "every job to finish and every lock to be released",
        )

        requests = [a.runtime.store.get(i) for i in a.request_ids()]
        upgrades = Counter(
            argv[argv.index("--description") + 1].split()[1] for argv in recorded_argv(helm_state)
            if argv[0] == "upgrade" and "--description" in argv
        )  # fmt: skip
        intervals: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for request in requests:
            if request.status is Status.APPROVED:
                assert upgrades[request.id] == 1, (request.id, upgrades, request.model_dump(), logs())
                state = a.runtime.store.job_state(request.job_id)
                intervals[request.env].append((float(state["started"]), float(state["ended"])))
            else:
                assert upgrades[request.id] == 0
        assert sum(upgrades.values()) == len([r for r in requests if r.status is Status.APPROVED])
        for env, spans in intervals.items():
            spans.sort()
            assert all(end <= nxt for (_s, end), (nxt, _e) in itertools.pairwise(spans)), (env, spans)
        assert set(intervals) == {*ENVS, "prod"}

        # The two prod approvals raced for one lock: one ran, the other approver was told prod is busy.
        decided = {r.id: r.status for r in requests if r.id in prod}
        assert sorted(s.value for s in decided.values()) == ["approved", "pending"], decided
        busy = [str(h.get("text")) for _n, h in fake_slack.hooks if "busy" in str(h.get("text"))]
        refused = [r for r in requests if r.status is not Status.APPROVED and r.env != "prod"]
        assert len(busy) >= len(refused) + 1


def _planned_prod(replica: Service) -> list[str] | None:
    found = [r for r in (replica.runtime.store.get(i) for i in replica.request_ids()) if r.env == "prod"]
    if len(found) == 2 and all(r.planned for r in found):
        return [r.id for r in sorted(found, key=lambda r: r.requester)]
    return None
