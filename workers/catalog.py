"""Every procedure a worker runs, in one table. The queue names a job's kind (a request's own procedure,
its pre-approval plan, or the cluster half of a lost-job report, `core.queue.JobKind`); the worker looks
the procedure up here by the request's verb. Nothing registers itself on import.
"""

from __future__ import annotations

from workers import deploy, diagnose, history, rollback, status
from workers.harbor import verify
from workers.procedures import Procedure

PROCEDURES: dict[str, Procedure] = {
    p.name: p
    for p in (
        deploy.plan,
        deploy.deploy,
        rollback.rollback_plan,
        rollback.rollback,
        status.status,
        history.history,
        diagnose.diagnose,
        diagnose.argocd,
        verify.harbor_verify,
        verify.harbor_bootstrap,
    )
}

# The pre-approval job of each verb that has one: the plan a deploy's approval binds to, the target a
# rollback's approval names. Requests of other verbs are not planned (core.requests.new_request).
PLANS: dict[str, Procedure] = {"deploy": deploy.plan, "rollback": rollback.rollback_plan}


def for_request(verb: str, *, plan: bool) -> Procedure | None:
    return PLANS.get(verb) if plan else PROCEDURES.get(verb)
