"""The Harbor pull-secret chain as the openbao-secrets-manager chart and ESO leave it in a cluster, for
seeding the loopback Kubernetes API (tests and `plate-bot demo`): the ESO pod, Secret `openbao-token`,
ServiceAccount, SecretStore, ExternalSecret and the dockerconfigjson Secret, in the API's own shapes.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

ESO_NS = "external-secrets-system"
DOCKER_CONFIG_TYPE = "kubernetes.io/dockerconfigjson"
USER, PASSWORD = "robot$plate+puller", "Hx7-robot-pw-2fQ9"
OPENBAO_TOKEN = "hvs.CAESIJzL9kQ2xY7pWm4nVb8rTe1uGh5oKd3sFa6"  # noqa: S105 - a fake, for the loopback API


def ago(seconds: int) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def docker_config_json(host: str, user: str = USER, password: str = PASSWORD) -> str:
    auth = b64(f"{user}:{password}")
    return json.dumps({"auths": {host: {"username": user, "password": password, "auth": auth}}})


def pull_secret(ns: str, host: str, user: str = USER, password: str = PASSWORD,
                name: str = "harbor-docker-secret") -> dict[str, Any]:  # fmt: skip
    """A `kubernetes.io/dockerconfigjson` Secret with credentials for `host`, as ESO or kubectl makes it."""
    return secret(name, ns, {".dockerconfigjson": docker_config_json(host, user, password)}, DOCKER_CONFIG_TYPE)


def eso_pod(name: str = "external-secrets-6b8f7c9d5-x2kq4", *, running: bool = True) -> dict[str, Any]:
    state: dict[str, Any] = {"running": {"startedAt": ago(3600)}}
    if not running:
        state = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container"}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ESO_NS, "labels": {"app.kubernetes.io/name": "external-secrets"}},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if running else "False"}],
            "containerStatuses": [{"name": "external-secrets", "ready": running, "restartCount": 0, "state": state}],
        },
    }


def secret(name: str, ns: str, data: dict[str, str], type_: str = "Opaque") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": type_,
        "metadata": {"name": name, "namespace": ns},
        "data": {k: b64(v) for k, v in data.items()},
    }


def secret_store(ns: str, *, ready: bool = True, message: str = "store validated", version: str = "v1") -> dict:
    return {
        "apiVersion": f"external-secrets.io/{version}",
        "kind": "SecretStore",
        "metadata": {"name": "openbao-harbor", "namespace": ns},
        "spec": {
            "provider": {
                "vault": {
                    "server": "https://openbao.example.com:8200",
                    "path": "secret",
                    "version": "v2",
                    "auth": {"tokenSecretRef": {"name": "openbao-token", "key": "token"}},
                }
            }
        },
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": "Valid" if ready else "InvalidProviderConfig",
                    "message": message,
                    "lastTransitionTime": ago(600),
                }
            ]
        },
    }


def external_secret(ns: str, *, ready: bool = True, message: str = "Secret was synced", version: str = "v1") -> dict:
    return {
        "apiVersion": f"external-secrets.io/{version}",
        "kind": "ExternalSecret",
        "metadata": {"name": "harbor-registry-secret", "namespace": ns},
        "spec": {
            "refreshInterval": "1h",
            "secretStoreRef": {"name": "openbao-harbor", "kind": "SecretStore"},
            "target": {"name": "harbor-docker-secret", "template": {"type": "kubernetes.io/dockerconfigjson"}},
            "data": [{"secretKey": "password", "remoteRef": {"key": "harbor/robot", "property": "password"}}],
        },
        "status": {
            "refreshTime": ago(125),
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": "SecretSynced" if ready else "SecretSyncedError",
                    "message": message,
                }
            ],
        },
    }


def chain_objects(ns: str, registry: str, *, token: str = OPENBAO_TOKEN, password: str = PASSWORD) -> list[dict]:
    """The healthy chain in `ns`, the way the openbao-secrets-manager chart and ESO leave it."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ESO_NS}},
        eso_pod(),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        secret("openbao-token", ns, {"token": token}),
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "harbor-secret-reader", "namespace": ns}},
        secret_store(ns),
        external_secret(ns),
        secret(
            "harbor-docker-secret",
            ns,
            {".dockerconfigjson": docker_config_json(registry, password=password)},
            "kubernetes.io/dockerconfigjson",
        ),
    ]


STORE_REFUSED = (  # the vault provider's error for a revoked token
    "unable to validate store: invalid vault credentials: Error making API request. URL: GET "
    "https://openbao.example.com:8200/v1/auth/token/lookup-self Code: 403. Errors: * permission denied"
)


def store_outage(ns: str, registry: str) -> list[dict]:
    """The seed's incident: OpenBao revoked the store's token, so the SecretStore is not Ready, ESO stopped
    syncing and the pull secret is gone."""
    keep = [o for o in chain_objects(ns, registry) if o["kind"] not in ("SecretStore", "ExternalSecret")]
    store_not_ready = "the desired SecretStore openbao-harbor is not ready"
    return [
        *[o for o in keep if o["metadata"]["name"] != "harbor-docker-secret"],
        secret_store(ns, ready=False, message=STORE_REFUSED),
        external_secret(ns, ready=False, message=store_not_ready),
    ]
