"""PURE. The seed's cluster check, made strict: a production job refuses a cluster it cannot prove is
the one the environment declares.

The seed's deploy-prod.sh asked for an extra `yes` when `kubectl config current-context` contained
neither `prod` nor `production`; a bot has nobody to ask mid-job, so it refuses instead, unless the
environments file explicitly allows that name.
"""

from __future__ import annotations

import re

from config.environments import Environment
from workers.errors import StepFailed

_PROD_NAME = re.compile(r"prod(uction)?", re.IGNORECASE)


def check_cluster(env: Environment, *, cluster_name: str | None, context_found: bool, cluster_uid: str | None) -> str:
    """Return a note for the checklist, or raise StepFailed naming what did not match."""
    if env.kube_context and not context_found:
        raise StepFailed(f"the kube context `{env.kube_context}` does not exist in this worker's kubeconfig")
    if env.cluster and cluster_name is not None and cluster_name != env.cluster:
        raise StepFailed(
            f"context `{env.kube_context}` points at cluster `{cluster_name}`, "
            f"but `{env.name}` declares `{env.cluster}`"
        )
    name = cluster_name or env.cluster
    if env.is_production:
        if name is None:
            if not env.cluster_uid:
                raise StepFailed(
                    "cannot tell which cluster this is (in-cluster config): "
                    f"declare `cluster` or `cluster_uid` for `{env.name}`"
                )
        elif not _PROD_NAME.search(name) and name not in env.allowed_cluster_names:
            raise StepFailed(
                f"`{env.name}` is a production environment but cluster `{name}` has neither `prod` nor `production` "
                "in its name; list it under `allowed_cluster_names` if this is intended"
            )
    if env.cluster_uid is not None and cluster_uid != env.cluster_uid:
        raise StepFailed(
            f"cluster identity mismatch: kube-system UID is `{cluster_uid}`, `{env.name}` pins `{env.cluster_uid}`"
        )
    where = (
        f"context `{env.kube_context}` → cluster `{name}`" if env.kube_context else f"in-cluster ({name or 'unnamed'})"
    )
    return where + (" · identity pinned" if env.cluster_uid else "")
