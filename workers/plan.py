"""PURE. What a deploy would change: a per-resource diff of rendered vs live manifests, and a digest
that binds an approval to exactly that change.

The digest covers the rendered manifests, the chart's name and version, the effective values and, for a
chart fetched from a registry, a Helm repository or git, its pin (content digest or commit); the
deploy job recomputes it and refuses to run if it differs from the approved one. Secret data is never
shown, only that it changed.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from core.redact import REDACTOR

Obj = dict[str, Any]
EXCERPT_LINES = 14
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


@dataclass(frozen=True)
class Change:
    action: str  # "add" | "change" | "remove"
    kind: str
    name: str
    excerpt: str = ""

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class Plan:
    digest: str
    chart: str
    first_install: bool
    changes: tuple[Change, ...] = ()
    image_before: str | None = None
    image_after: str | None = None
    workloads: tuple[str, ...] = field(default=())
    source: str = ""  # where a fetched chart came from and its pin; "" for a chart directory
    images: tuple[str, ...] = ()  # the card's image lines: `repo:tag @ sha256:…`, warnings

    def of(self, action: str) -> list[Change]:
        return [c for c in self.changes if c.action == action]

    @property
    def is_empty(self) -> bool:
        return not self.changes

    @property
    def short_digest(self) -> str:
        return self.digest[:12]

    def summary(self, limit: int = 8) -> list[str]:
        """The lines on the approval card."""
        counts = f"{len(self.of('add'))} to add, {len(self.of('change'))} to change, {len(self.of('remove'))} to remove"
        lines = [f"*Plan* `{self.short_digest}` · chart {self.chart} · {counts}"]
        if self.source:
            lines.append(f"Chart source: `{self.source}`")
        lines.extend(self.images)
        if self.first_install:
            lines.append("First install of this release.")
        if self.image_before != self.image_after:
            lines.append(f"Image: `{self.image_before or 'none'}` → `{self.image_after or 'none'}`")
        names = [f"{'+' if c.action == 'add' else '~' if c.action == 'change' else '-'} {c.ref}" for c in self.changes]
        shown = names[:limit]
        if len(names) > limit:
            shown.append(f"… {len(names) - limit} more")
        if shown:
            lines.append(" · ".join(f"`{n}`" for n in shown))
        return lines

    def diff_text(self, limit: int = 2800) -> str:
        """The full diff for the thread, cut at `limit` characters with a count of what was cut."""
        parts = []
        for change in self.changes:
            head = {"add": "+ added", "change": "~ changed", "remove": "- removed"}[change.action]
            parts.append(f"{head} {change.ref}")
            if change.excerpt:
                parts.append(change.excerpt)
        text = REDACTOR.text("\n".join(parts)) or "no changes"  # redacted before it is cut
        if len(text) > limit:
            cut = text[:limit]
            text = cut + f"\n… {len(text) - limit} more characters of diff not shown"
        return text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        changes = tuple(Change(**c) for c in data.get("changes", ()))
        return cls(**{**data, "changes": changes, "workloads": tuple(data.get("workloads", ()))})


def parse_stream(text: str | None) -> dict[str, Obj]:
    """`Kind/name` -> object, for every document of a manifest stream."""
    out: dict[str, Obj] = {}
    for doc in yaml.safe_load_all(text or ""):
        if isinstance(doc, dict) and doc.get("kind") and (doc.get("metadata") or {}).get("name"):
            out[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return out


def deep_merge(base: Obj, override: Obj) -> Obj:
    """helm's coalescing of values files: maps merge, everything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def effective_values(layers: list[Obj], image_tag: str | None) -> Obj:
    merged: Obj = {}
    for layer in layers:
        merged = deep_merge(merged, layer or {})
    if image_tag is not None:
        merged = deep_merge(merged, {"image": {"tag": image_tag}})
    return merged


def digest(rendered: dict[str, Obj], chart: str, values: Obj, pin: str | None = None, images: Obj | None = None) -> str:
    bound: Obj = {"chart": chart, "manifests": rendered, "values": values}
    if pin is not None:  # absent for a chart directory: digests approved before pins existed stay valid
        bound["pin"] = pin
    if images:  # image tag -> manifest digest, where a registry could say
        bound["images"] = images
    canonical = json.dumps(bound, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _masked(obj: Obj) -> Obj:
    if obj.get("kind") != "Secret":
        return obj
    masked = dict(obj)
    for key in ("data", "stringData"):
        if isinstance(obj.get(key), dict):
            masked[key] = {k: "(hidden)" for k in obj[key]}
    return masked


def _excerpt(before: Obj, after: Obj) -> str:
    if before.get("kind") == "Secret":
        return "  (Secret data changed; values are not shown)"
    old = yaml.safe_dump(before, sort_keys=True).splitlines()
    new = yaml.safe_dump(after, sort_keys=True).splitlines()
    lines = [ln for ln in difflib.unified_diff(old, new, lineterm="", n=1) if not ln.startswith(("---", "+++"))]
    if len(lines) > EXCERPT_LINES:
        lines = [*lines[:EXCERPT_LINES], f"… {len(lines) - EXCERPT_LINES} more diff lines"]
    return "```" + "\n".join(lines) + "```"


def _image(objs: dict[str, Obj]) -> str | None:
    for key in sorted(objs):
        obj = objs[key]
        if obj.get("kind") in WORKLOAD_KINDS:
            containers = ((((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers")) or []
            if containers:
                return str(containers[0].get("image"))
    return None


def compute_plan(
    rendered_text: str,
    live_text: str | None,
    chart: str,
    values: Obj,
    pin: str | None = None,
    source: str = "",
    images: Obj | None = None,
    image_lines: tuple[str, ...] = (),
) -> Plan:
    rendered, live = parse_stream(rendered_text), parse_stream(live_text)
    changes: list[Change] = []
    for key in sorted(rendered.keys() | live.keys()):
        kind, name = key.split("/", 1)
        if key not in live:
            changes.append(Change("add", kind, name))
        elif key not in rendered:
            changes.append(Change("remove", kind, name))
        elif rendered[key] != live[key]:
            changes.append(Change("change", kind, name, _excerpt(_masked(live[key]), _masked(rendered[key]))))
    workloads = tuple(k for k, o in sorted(rendered.items()) if o.get("kind") in ("Deployment", "StatefulSet"))
    return Plan(
        digest=digest(rendered, chart, values, pin, images),
        chart=chart,
        first_install=live_text is None,
        changes=tuple(changes),
        image_before=_image(live),
        image_after=_image(rendered),
        workloads=workloads,
        source=source,
        images=image_lines,
    )
