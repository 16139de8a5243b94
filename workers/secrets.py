"""The Secret values every process must know before it posts or logs cluster text.

Exact-value redaction (core.redact) can only cut a secret it knows. A job learns the Secrets of its
environment's namespaces when it first reaches the cluster or helm (`JobContext`); the watcher lists them
before its other streams start and then follows them with a watch stream per namespace whose items only
update the registry (`SecretSink`), never the classification. A changed Secret replaces its values, a
deleted one drops them, and a relist (after 410 Gone) replaces the whole namespace, so a long-lived
watcher's registry follows the cluster instead of growing.
"""

from __future__ import annotations

import threading
from typing import Any

from config.environments import Environment
from core.redact import REDACTOR, Redactor, secret_values
from workers.watcher.streams import Change, Item, Sync

Obj = dict[str, Any]


def secret_namespaces(env: Environment) -> list[str]:
    """The namespaces whose Secrets a process working on `env` registers: the environment's own and the
    Harbor pull-secret chain's (where `openbao-token` and `harbor-docker-secret` live)."""
    harbor = env.harbor
    return list(dict.fromkeys([env.namespace, harbor.namespace or env.namespace, *harbor.namespaces]))


class SecretSink:
    """Where a Secrets stream delivers (it quacks like the watcher's queue): straight into the redaction
    registry, in the stream's own thread. `listed` is set after the first full list."""

    def __init__(self, context: str | None, namespace: str, redactor: Redactor = REDACTOR) -> None:
        self.scope = ("secret", context or "", namespace)
        self.redactor = redactor
        self.listed = threading.Event()

    def source(self, obj: Obj) -> tuple[str, ...]:
        return (*self.scope, str((obj.get("metadata") or {}).get("name", "")))

    def put(self, item: Item) -> None:
        if isinstance(item, Sync):
            self.redactor.replace(self.scope, {self.source(obj): secret_values(obj) for obj in item.items})
            self.listed.set()
        elif isinstance(item, Change):
            if item.type == "DELETED":
                self.redactor.remove(self.source(item.obj))
            else:
                self.redactor.set(self.source(item.obj), secret_values(item.obj))
