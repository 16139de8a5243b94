"""A fake `helm` executable that speaks helm v3/v4's argv and output for what plate-bot calls.

No helm binary can be installed here, so tests and the demo put this script on HELM_BIN instead.
Lint and render are real: they go through `helm_python`, a Helm v4 engine. Releases live as JSON under
$FAKE_HELM_STATE, so state survives across processes the way a cluster's release Secrets do.
Every call is appended to `argv.jsonl`, and `behaviour.json` injects the failures plate-bot must handle
(failed/timed-out/atomic-rolled-back upgrades, hangs, secrets echoed on stderr).
With $FAKE_HELM_KUBE_URL set, rendered objects are applied to that (fake) API server, and every revision is
also stored there as helm's secret driver stores it (`release_secret`), so a watcher sees releases change.

State directory layout:
    releases/<ns>__<name>.json  list of revisions, oldest first, in helm's release JSON shape
    argv.jsonl                 one JSON line per call (argv, env_kube_context, env_kubeconfig, env_names, pid, at)
    behaviour.json             see set_behaviour()
    .lock                      fcntl lock serialising state changes between concurrent calls
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fcntl
import fnmatch
import gzip
import json
import os
import re
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import yaml

STATE_ENV = "FAKE_HELM_STATE"
KUBE_URL_ENV = "FAKE_HELM_KUBE_URL"
DEFAULT_VERSION = "v3.16.2"
GIT_COMMIT = "13654a52f7c70a143b1dd51416d633e1071faffb"
# An injected failure without `fail_message` names the release's Deployment (named after the release, as
# the example charts do), so each release of a namespace fails in its own words.
DEFAULT_FAIL_MESSAGE = (
    'cannot patch "{name}" with kind Deployment: Deployment.apps "{name}" is invalid: '
    "spec.template.spec.containers[0].image: Invalid value"
)
UNREACHABLE_MESSAGE = (
    'Kubernetes cluster unreachable: Get "https://127.0.0.1:6443/version": '
    "dial tcp 127.0.0.1:6443: connect: connection refused"
)

# helm's releaseutil.InstallOrder: kinds earlier in the list are applied (and printed) first.
INSTALL_ORDER = [
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
    "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
    "PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole",
    "ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding",
    "RoleBindingList", "Service", "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
    "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress", "APIService",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
]  # fmt: skip
_KIND_RANK = {kind: i for i, kind in enumerate(INSTALL_ORDER)}
HOOK_EVENTS = {
    "pre-install", "post-install", "pre-delete", "post-delete", "pre-upgrade", "post-upgrade",
    "pre-rollback", "post-rollback", "test", "test-success",
}  # fmt: skip
CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass",
    "StorageClass", "PersistentVolume", "IngressClass", "APIService", "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
}  # fmt: skip
# helm's SplitManifests separator (v4 keeps trailing whitespace of each document, v3 trimmed it).
_DOC_SEP = re.compile(r"(?:^|\s*\n)---\s*")
_RELEASE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class HelmError(Exception):
    """Ends the command the way cobra does: `Error: <msg>` on stderr, exit 1."""


class _Cancelled(Exception):
    """SIGTERM/SIGINT mid-upgrade: helm (>=3.13) then marks the release failed with 'context canceled'."""


# ---------------------------------------------------------------------------------------------------
# Public helpers for tests and the demo
# ---------------------------------------------------------------------------------------------------


def install_wrapper(directory: str | Path, state_dir: str | Path) -> Path:
    """Write an executable `<directory>/helm` that runs this module; return its path (use it as HELM_BIN)."""
    directory, state_dir = Path(directory), Path(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    repo_root = Path(__file__).resolve().parent.parent
    script = directory / "helm"
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, sys\n"
        # The wrapper runs from any cwd, so make `sandbox` importable without relying on an install.
        f"sys.path.insert(0, {str(repo_root)!r})\n"
        f"os.environ.setdefault({STATE_ENV!r}, {str(state_dir.resolve())!r})\n"
        "from sandbox.helm import main\n"
        "sys.exit(main())\n"
    )
    script.chmod(0o755)
    return script


def recorded_calls(state_dir: str | Path) -> list[dict[str, Any]]:
    """Every recorded invocation, oldest first."""
    path = Path(state_dir) / "argv.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def recorded_argv(state_dir: str | Path) -> list[list[str]]:
    """The argv (without the program name) of every invocation, oldest first."""
    return [call["argv"] for call in recorded_calls(state_dir)]


def set_behaviour(state_dir: str | Path, **kw: Any) -> dict[str, Any]:
    """Merge keys into behaviour.json (a value of None removes the key); return the new behaviour.

    upgrade: "ok" | "fail" | "timeout" | "atomic-rollback" | "hang" (failures roll back with --atomic)
        | "slow" (applies, waits `slow_seconds` like a long --wait, then succeeds; SIGTERM fails it)
    rollback: "ok" | "fail" | "timeout" | "hang";  lint: "ok" | "fail"
        (any of these may be a list used as a queue: each call takes the first item, the last one sticks)
    fail_message, lint_error: texts of injected failures;  timeout_seconds: replaces the --timeout wait
    wait_for: a file path; an upgrade's timeout/atomic-rollback wait ends early once it exists
    stderr_extra: appended to stderr of every call;  delay: seconds before answering any command
    unreachable: cluster commands fail like an unreachable API server
    version: what `helm version` reports;  now: fixed ISO time for LAST DEPLOYED / updated
    """
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    with _locked(state):
        data = _read_json(state / "behaviour.json", {})
        for key, value in kw.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        _write_json(state / "behaviour.json", data)
    return data


def read_releases(state_dir: str | Path, name: str, namespace: str) -> list[dict[str, Any]]:
    """The stored revisions of one release (helm's release JSON shape plus a private `computed`)."""
    return _read_json(_release_file(Path(state_dir), namespace, name), [])


# ---------------------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(state: Path) -> Iterator[None]:
    with open(state / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default


def _write_json(path: Path, data: Any) -> None:
    # Write-then-rename so a concurrent reader never sees half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))  # key order kept: helm prints Go struct order
    os.replace(tmp, path)


def _release_file(state: Path, namespace: str, name: str) -> Path:
    return state / "releases" / f"{namespace}__{name}.json"


class _Ctx:
    """One invocation: state dir, behaviour, parsed global flags."""

    def __init__(self, state: Path, opts: dict[str, Any]) -> None:
        self.state = state
        self.opts = opts
        self.namespace: str = opts.get("namespace") or os.environ.get("HELM_NAMESPACE") or "default"
        self.behaviour: dict[str, Any] = _read_json(state / "behaviour.json", {})

    def take(self, key: str, default: str = "ok") -> str:
        """Behaviour value for `key`; a list is a queue (first item consumed, the last one sticks)."""
        value = self.behaviour.get(key, default)
        if not isinstance(value, list):
            return str(value)
        if not value:
            return default
        if len(value) > 1:
            with _locked(self.state):
                data = _read_json(self.state / "behaviour.json", {})
                queue = data.get(key)
                if isinstance(queue, list) and len(queue) > 1:
                    value = queue
                    data[key] = queue[1:]
                    _write_json(self.state / "behaviour.json", data)
        return str(value[0])

    def now(self) -> dt.datetime:
        # A fixed "now" lets golden-output tests pin LAST DEPLOYED.
        fixed = self.behaviour.get("now")
        if fixed:
            return dt.datetime.fromisoformat(str(fixed).replace("Z", "+00:00")).astimezone()
        return dt.datetime.now().astimezone()

    def load(self, name: str) -> list[dict[str, Any]]:
        return _read_json(_release_file(self.state, self.namespace, name), [])

    def save(self, name: str, revs: list[dict[str, Any]]) -> None:
        path = _release_file(self.state, self.namespace, name)
        before = _read_json(path, [])
        if revs:
            _write_json(path, revs)
        else:
            path.unlink(missing_ok=True)
        _kube_release_records(self.namespace, before, revs)

    def check_reachable(self) -> None:
        if self.behaviour.get("unreachable"):
            raise HelmError(UNREACHABLE_MESSAGE)


# ---------------------------------------------------------------------------------------------------
# Time formats helm prints
# ---------------------------------------------------------------------------------------------------


def _go_rfc3339(t: dt.datetime) -> str:
    """Go's time.RFC3339Nano as helm's JSON uses it: trailing zeros dropped, 'Z' for a zero offset."""
    frac = f"{t.microsecond:06d}".rstrip("0")
    off = t.utcoffset() or dt.timedelta(0)
    if off == dt.timedelta(0):
        zone = "Z"
    else:
        sign = "+" if off >= dt.timedelta(0) else "-"
        minutes = abs(int(off.total_seconds())) // 60
        zone = f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + zone


def _parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone()


def _ansic(value: str) -> str:
    """Go's time.ANSIC ('Mon Jan _2 15:04:05 2006'), used for LAST DEPLOYED and history tables."""
    t = _parse_time(value)
    return f"{t:%a %b} {t.day:>2} {t:%H:%M:%S %Y}"


def _go_time_string(value: str) -> str:
    """Go's Time.String(), which `helm list -o json` uses for "updated"."""
    t = _parse_time(value)
    frac = f"{t.microsecond:06d}".rstrip("0")
    return f"{t:%Y-%m-%d %H:%M:%S}" + (f".{frac}" if frac else "") + f" {t:%z} {t.tzname()}"


def _parse_duration(text: str, flag: str = "--timeout") -> float:
    """Go's time.ParseDuration ('5m0s', '90s', '1.5h', '300ms'), with its error for a bare number."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    if text in ("0", "+0", "-0"):
        return 0.0
    parts = re.findall(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text.lstrip("+"):
        reason = "missing unit in duration" if re.fullmatch(r"[0-9.]+", text) else "invalid duration"
        raise HelmError(f'invalid argument "{text}" for "{flag}" flag: time: {reason} "{text}"')
    return sum(float(n) * units[u] for n, u in parts)


# ---------------------------------------------------------------------------------------------------
# Argument parsing (cobra/pflag rules: flags anywhere, --x=v, --x v, -n v, -nv, `--` ends flags)
# ---------------------------------------------------------------------------------------------------

# Kinds: "bool", "str", "list" (repeatable), "opt" (value only with '=', like --dry-run / --wait).
_GLOBAL = {
    "kube-context": "str", "namespace": "str", "kubeconfig": "str", "debug": "bool", "help": "bool",
    "kube-apiserver": "str", "kube-token": "str", "kube-as-user": "str", "kube-as-group": "list",
    "kube-ca-file": "str", "kube-insecure-skip-tls-verify": "bool", "kube-tls-server-name": "str",
    "burst-limit": "str", "qps": "str", "registry-config": "str", "repository-cache": "str",
    "repository-config": "str", "content-cache": "str", "color": "str", "colour": "str",
}  # fmt: skip
_GLOBAL_SHORT = {"n": "namespace", "h": "help"}
_VALUES = {
    "values": "list", "set": "list", "set-string": "list", "set-json": "list", "set-file": "list",
    "set-literal": "list",
}  # fmt: skip
_INSTALLISH = {
    **_VALUES, "atomic": "bool", "rollback-on-failure": "bool", "wait": "opt", "wait-for-jobs": "bool",
    "timeout": "str", "dry-run": "opt", "description": "str", "create-namespace": "bool", "devel": "bool",
    "version": "str", "no-hooks": "bool", "skip-crds": "bool", "disable-openapi-validation": "bool",
    "render-subchart-notes": "bool", "hide-notes": "bool", "labels": "str", "take-ownership": "bool",
    "server-side": "opt", "force-conflicts": "bool", "force": "bool", "force-replace": "bool",
    "dependency-update": "bool", "skip-schema-validation": "bool", "output": "str", "post-renderer": "str",
    "post-renderer-args": "list", "repo": "str", "username": "str", "password": "str", "verify": "bool",
    "keyring": "str", "enable-dns": "bool", "hide-secret": "bool", "plain-http": "bool",
    "insecure-skip-tls-verify": "bool", "ca-file": "str", "cert-file": "str", "key-file": "str",
    "pass-credentials": "bool",
}  # fmt: skip
_COMMANDS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "version": ({"short": "bool", "template": "str", "client": "bool"}, {"c": "client"}),
    "lint": (
        {**_VALUES, "strict": "bool", "quiet": "bool", "with-subcharts": "bool", "kube-version": "str",
         "skip-schema-validation": "bool"},
        {"f": "values"},
    ),
    "template": (
        {**_INSTALLISH, "show-only": "list", "include-crds": "bool", "skip-tests": "bool",
         "is-upgrade": "bool", "validate": "bool", "kube-version": "str", "api-versions": "list",
         "output-dir": "str", "release-name": "bool", "name-template": "str", "generate-name": "bool",
         "replace": "bool"},
        {"f": "values", "s": "show-only", "a": "api-versions", "g": "generate-name"},
    ),
    "upgrade": (
        {**_INSTALLISH, "install": "bool", "reuse-values": "bool", "reset-values": "bool",
         "reset-then-reuse-values": "bool", "history-max": "str", "cleanup-on-fail": "bool"},
        {"f": "values", "i": "install", "o": "output"},
    ),
    "install": (
        {**_INSTALLISH, "generate-name": "bool", "name-template": "str", "replace": "bool"},
        {"f": "values", "o": "output", "g": "generate-name"},
    ),
    "status": (
        {"output": "str", "revision": "str", "show-desc": "bool", "show-resources": "bool"},
        {"o": "output"},
    ),
    "history": ({"output": "str", "max": "str"}, {"o": "output"}),
    "get values": ({"all": "bool", "output": "str", "revision": "str"}, {"a": "all", "o": "output"}),
    "get manifest": ({"revision": "str"}, {}),
    "get notes": ({"revision": "str"}, {}),
    "get hooks": ({"revision": "str"}, {}),
    "rollback": (
        {"wait": "opt", "wait-for-jobs": "bool", "timeout": "str", "force": "bool", "cleanup-on-fail": "bool",
         "dry-run": "opt", "recreate-pods": "bool", "no-hooks": "bool", "history-max": "str",
         "server-side": "opt", "force-conflicts": "bool", "force-replace": "bool"},
        {},
    ),
    "uninstall": (
        {"keep-history": "bool", "wait": "opt", "timeout": "str", "dry-run": "opt", "no-hooks": "bool",
         "cascade": "str", "description": "str", "ignore-not-found": "bool"},
        {},
    ),
    "list": (
        {"output": "str", "all": "bool", "all-namespaces": "bool", "filter": "str", "short": "bool",
         "deployed": "bool", "failed": "bool", "pending": "bool", "superseded": "bool", "uninstalled": "bool",
         "uninstalling": "bool", "max": "str", "offset": "str", "date": "bool", "reverse": "bool",
         "selector": "str", "no-headers": "bool", "time-format": "str"},
        {"o": "output", "a": "all", "A": "all-namespaces", "f": "filter", "q": "short", "m": "max",
         "d": "date", "r": "reverse", "l": "selector"},
    ),
}  # fmt: skip
_ALIASES = {"ls": "list", "un": "uninstall", "del": "uninstall", "delete": "uninstall", "hist": "history"}
_GET_SUBCOMMANDS = {"values", "manifest", "notes", "hooks"}


def _find_command(argv: list[str]) -> tuple[str, list[int]]:
    """The command words (e.g. 'get values') and their argv indexes, skipping global flags and values."""
    words: list[str] = []
    idx: list[int] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            break
        if arg.startswith("-") and arg != "-":
            name = arg.lstrip("-")
            long = _GLOBAL_SHORT.get(name, name) if not arg.startswith("--") else name
            if "=" not in arg and _GLOBAL.get(long) in ("str", "list"):
                i += 1  # this flag's value is the next token, not a command word
            i += 1
            continue
        words.append(arg)
        idx.append(i)
        if len(words) == 1 and arg == "get":
            i += 1
            continue
        break
    if not words:
        return "", []
    cmd = _ALIASES.get(words[0], words[0])
    if cmd == "get" and len(words) > 1:
        if words[1] not in _GET_SUBCOMMANDS:
            raise HelmError(f'unknown command "{words[1]}" for "helm get"')
        return f"get {words[1]}", idx
    return cmd, idx[:1]


def _parse_bool(value: str, flag: str) -> bool:
    if value.lower() in ("1", "t", "true"):
        return True
    if value.lower() in ("0", "f", "false"):
        return False
    raise HelmError(
        f'invalid argument "{value}" for "{flag}" flag: strconv.ParseBool: parsing "{value}": invalid syntax'
    )


def _parse_args(argv: list[str], spec: dict[str, str], short: dict[str, str]) -> tuple[list[str], dict[str, Any]]:
    spec = {**_GLOBAL, **spec}
    short = {**_GLOBAL_SHORT, **short}
    positionals: list[str] = []
    opts: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            positionals.extend(argv[i:])
            break
        if not arg.startswith("-") or arg == "-":
            positionals.append(arg)
            continue
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            label = f"--{name}"
            if name not in spec:
                raise HelmError(f"unknown flag: {label}")
        else:
            letter = arg[1]
            if letter not in short:
                raise HelmError(f"unknown shorthand flag: '{letter}' in {arg}")
            name, label = short[letter], f"-{letter}"
            rest = arg[2:]
            eq, value = ("=", rest[1:]) if rest.startswith("=") else ("=" if rest else "", rest)
        kind = spec[name]
        if kind in ("bool", "opt"):
            if kind == "bool":
                opts[name] = _parse_bool(value, f"--{name}") if eq else True
            else:
                opts[name] = value if eq else "true"
            continue
        if not eq:
            if i >= len(argv):
                what = f"--{name}" if label.startswith("--") else f"'{label[1]}' in {label}"
                raise HelmError(f"flag needs an argument: {what}")
            value = argv[i]
            i += 1
        if kind == "list":
            opts.setdefault(name, []).append(value)
        else:
            opts[name] = value
    return positionals, opts


def _need_args(cmd: str, positionals: list[str], n: int, usage: str) -> None:
    if len(positionals) != n:
        what = "argument" if n == 1 else "arguments"
        raise HelmError(f'"helm {cmd}" requires {n} {what}\n\nUsage:  helm {usage} [flags]')


# ---------------------------------------------------------------------------------------------------
# Values and rendering (real, through helm_python)
# ---------------------------------------------------------------------------------------------------


def _helm() -> Any:
    # Imported lazily: status/history/get never need the 85 MB native library.
    import helm_python

    return helm_python


def _merge_maps(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """helm's mergeMaps: nested maps merge, everything else in `b` replaces."""
    out = dict(a)
    for key, value in b.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge_maps(out[key], value)
        else:
            out[key] = value
    return out


def _user_values(opts: dict[str, Any]) -> dict[str, Any]:
    """-f files in order, then --set-json, --set, --set-string, --set-file, --set-literal (helm's order)."""
    helm = _helm()
    base: dict[str, Any] = {}
    for path in opts.get("values", []):
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise HelmError(f"open {path}: no such file or directory") from exc
        try:
            base = _merge_maps(base, helm.values_from_yaml(text) or {})
        except helm.HelmError as exc:
            raise HelmError(f"failed to parse {path}: {exc}") from exc
    parsers = [
        ("set-json", helm.parse_set_json, "--set-json"),
        ("set", helm.parse_set_string, "--set"),
        ("set-string", helm.parse_set_string_values, "--set-string"),
        ("set-file", helm.parse_set_file, "--set-file"),
        ("set-literal", helm.parse_set_literal, "--set-literal"),
    ]
    for key, parse, flag in parsers:
        for expr in opts.get(key, []):
            try:
                base = _merge_maps(base, parse(expr))
            except helm.HelmError as exc:
                raise HelmError(f"failed parsing {flag} data: {exc}") from exc
    return base


def _load_chart(path: str) -> Any:
    helm = _helm()
    if not Path(path).exists():
        raise HelmError(f'path "{path}" not found')
    try:
        return helm.Chart.load(path)
    except helm.HelmError as exc:
        raise HelmError(str(exc)) from exc


def _split_manifests(content: str) -> list[str]:
    """releaseutil.SplitManifests (v4): split on `---`, keep each document's trailing whitespace."""
    docs = _DOC_SEP.split(content.lstrip())
    return [d.lstrip() for d in docs if d != ""]


def _sort_rendered(files: dict[str, str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """releaseutil.SortManifests: (hooks, manifests) in InstallOrder, template path order within a kind."""
    manifests: list[dict[str, Any]] = []
    hooks: list[dict[str, Any]] = []
    for path in sorted(files):
        content = files[path]
        if os.path.basename(path).startswith("_") or not content.strip() or path.endswith("NOTES.txt"):
            continue
        for doc in _split_manifests(content):
            try:
                head = yaml.safe_load(doc)
            except yaml.YAMLError as exc:
                raise HelmError(
                    f"YAML parse error on {path}: {exc}\n\nUse --debug flag to render out invalid YAML"
                ) from exc
            head = head if isinstance(head, dict) else {}
            meta = head.get("metadata") if isinstance(head.get("metadata"), dict) else {}
            annotations = meta.get("annotations") or {}
            kind = str(head.get("kind") or "")
            hook = annotations.get("helm.sh/hook") if isinstance(annotations, dict) else None
            if not hook:
                manifests.append({"name": path, "content": doc, "kind": kind})
                continue
            events = [e.strip().lower() for e in str(hook).split(",")]
            if not all(e in HOOK_EVENTS for e in events):
                continue  # helm skips unknown hook types
            try:
                weight = int(annotations.get("helm.sh/hook-weight", "0"))
            except ValueError:
                weight = 0
            policies = [p.strip() for p in str(annotations.get("helm.sh/hook-delete-policy", "")).split(",")]
            hooks.append({
                "name": str(meta.get("name", "")), "kind": kind, "path": path, "manifest": doc,
                "events": events, "last_run": {"started_at": "", "completed_at": "", "phase": ""},
                "weight": weight, "delete_policies": [p for p in policies if p],
            })  # fmt: skip

    def rank(kind: str) -> tuple[int, str]:
        # Known kinds by InstallOrder; unknown kinds last, alphabetically (helm's lessByKind).
        return (_KIND_RANK[kind], "") if kind in _KIND_RANK else (len(INSTALL_ORDER), kind)

    manifests.sort(key=lambda m: rank(m["kind"]))
    hooks.sort(key=lambda h: rank(h["kind"]))
    return hooks, manifests


def _stream(manifests: list[dict[str, Any]]) -> str:
    """The release manifest exactly as helm stores and prints it."""
    return "".join(f"---\n# Source: {m['name']}\n{m['content']}\n" for m in manifests)


def _render(
    chart: Any, values: dict[str, Any], name: str, namespace: str, revision: int, is_upgrade: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """(manifests in install order, hooks, notes)."""
    helm = _helm()
    try:
        files = chart.render(
            values, name=name, namespace=namespace, revision=revision,
            is_install=not is_upgrade, is_upgrade=is_upgrade,
        )  # fmt: skip
    except helm.HelmError as exc:
        raise HelmError(str(exc)) from exc
    notes = files.get(f"{chart.name}/templates/NOTES.txt", "")
    hooks, manifests = _sort_rendered(files)
    return manifests, hooks, notes


def _chart_json(chart: Any) -> dict[str, Any]:
    """The `chart` block of a release as helm stores it (templates base64, like Go's []byte)."""
    return {
        "metadata": chart.metadata,
        "lock": None,
        "templates": [
            {"name": t["name"], "data": base64.b64encode(str(t["data"]).encode()).decode()} for t in chart.templates
        ],
        "values": chart.values,
        "schema": None,
        "files": [],
    }


# ---------------------------------------------------------------------------------------------------
# Output helpers
# ---------------------------------------------------------------------------------------------------


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _go_json(data: Any) -> str:
    """encoding/json output: compact, HTML characters escaped, one trailing newline."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") + "\n"


def _go_yaml(data: Any) -> str:
    if data is None:
        return "null\n"
    return yaml.safe_dump(data, default_flow_style=False, sort_keys=True, allow_unicode=True)


def _table(rows: list[list[str]]) -> str:
    """gosuri/uitable as helm uses it: every cell padded to its column width, tab separated."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "".join("\t".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + "\n" for r in rows)


def _encode(data: Any, fmt: str, table: Any) -> str:
    if fmt == "json":
        return _go_json(data)
    if fmt == "yaml":
        return _go_yaml(data)
    if fmt == "table":
        return table()
    raise HelmError(f"invalid format type {fmt!r}")


def _public(rev: dict[str, Any]) -> dict[str, Any]:
    """A stored revision in helm's release JSON shape: Go field order, omitempty config/hooks."""
    keys = ("name", "info", "chart", "config", "manifest", "hooks", "version", "namespace")
    return {k: rev[k] for k in keys if k in rev and (rev[k] or k not in ("config", "hooks"))}


def _status_table(rev: dict[str, Any], *, show_desc: bool = False, dry_run: bool = False,
                  hide_notes: bool = False) -> str:  # fmt: skip
    info = rev["info"]
    lines = [f"NAME: {rev['name']}\n"]
    if info.get("last_deployed"):
        lines.append(f"LAST DEPLOYED: {_ansic(info['last_deployed'])}\n")
    lines += [
        f"NAMESPACE: {rev['namespace']}\n",
        f"STATUS: {info['status']}\n",
        f"REVISION: {rev['version']}\n",
    ]
    if show_desc:
        lines.append(f"DESCRIPTION: {info['description']}\n")
    lines.append("TEST SUITE: None\n")
    if dry_run:
        lines.append("HOOKS:\n")
        lines += [f"---\n# Source: {h['path']}\n{h['manifest']}\n" for h in rev.get("hooks") or []]
        lines.append(f"MANIFEST:\n{rev['manifest']}\n")
    if info.get("notes") and not hide_notes:
        lines.append(f"NOTES:\n{info['notes'].strip()}\n")
    return "".join(lines)


# ---------------------------------------------------------------------------------------------------
# Optional link to a fake Kubernetes API
# ---------------------------------------------------------------------------------------------------


def _plural(kind: str) -> str:
    lower = kind.lower()
    if lower.endswith(("s", "x", "ch", "sh")):
        return lower + "es"
    if lower.endswith("y") and lower[-2:-1] not in "aeiou":
        return lower[:-1] + "ies"
    return lower + "s"


def _kube(method: str, url: str, body: dict[str, Any] | None = None,
          ctype: str = "application/json") -> tuple[int, dict[str, Any]]:  # fmt: skip
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": ctype})  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 -- loopback fake API only
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw) if raw else {}
        except ValueError:
            return exc.code, {"message": raw.decode(errors="replace")}
    except (urllib.error.URLError, OSError) as exc:
        raise HelmError(f'Kubernetes cluster unreachable: Get "{url}": {exc}') from exc


def _object_url(base: str, obj: dict[str, Any], namespace: str) -> tuple[str, str]:
    """(collection URL, item URL) for an object: core group under /api/v1, others under /apis."""
    api_version, kind = str(obj.get("apiVersion", "v1")), str(obj.get("kind", ""))
    prefix = f"{base}/api/{api_version}" if "/" not in api_version else f"{base}/apis/{api_version}"
    ns = "" if kind in CLUSTER_SCOPED else f"/namespaces/{obj['metadata'].get('namespace') or namespace}"
    coll = f"{prefix}{ns}/{_plural(kind)}"
    return coll, f"{coll}/{obj['metadata'].get('name', '')}"


def _kube_objects(manifest: str, namespace: str, release: str) -> list[dict[str, Any]]:
    objs = []
    for doc in yaml.safe_load_all(manifest):
        if not isinstance(doc, dict) or not doc.get("kind"):
            continue
        meta = doc.setdefault("metadata", {})
        if doc["kind"] not in CLUSTER_SCOPED:
            meta.setdefault("namespace", namespace)
        # Ownership marks helm's setMetadataVisitor adds; diagnosis code may rely on them.
        meta.setdefault("annotations", {}).update(
            {"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": namespace}
        )
        meta.setdefault("labels", {})["app.kubernetes.io/managed-by"] = "Helm"
        objs.append(doc)
    return objs


def _kube_apply(manifest: str, namespace: str, release: str) -> None:
    """Create or replace each rendered object on $FAKE_HELM_KUBE_URL (no-op when unset)."""
    base = os.environ.get(KUBE_URL_ENV, "").rstrip("/")
    if not base:
        return
    for obj in _kube_objects(manifest, namespace, release):
        coll, item = _object_url(base, obj, namespace)
        kind, name = obj["kind"], obj["metadata"].get("name")
        code, current = _kube("GET", item)
        if code == 200:
            # Replace semantics of a real apiserver: status survives, generation moves on a spec change.
            meta = obj["metadata"]
            cur_meta = current.get("metadata") or {}
            if cur_meta.get("resourceVersion"):
                meta["resourceVersion"] = cur_meta["resourceVersion"]
            if "status" in current:
                obj["status"] = current["status"]
            if current.get("spec") != obj.get("spec"):
                meta["generation"] = int(cur_meta.get("generation") or 1) + 1
            code, reply = _kube("PUT", item, obj)
            if code in (404, 405):  # some fakes (kmock) have no PUT: fall back to a merge patch
                code, reply = _kube("PATCH", item, obj, "application/merge-patch+json")
            if code >= 300:
                raise HelmError(f'cannot patch "{name}" with kind {kind}: {reply.get("message", reply)}')
        else:
            obj["metadata"].setdefault("generation", 1)
            code, reply = _kube("POST", coll, obj)
            if code >= 300:
                raise HelmError(f"failed to create resource: {reply.get('message', reply)}")


def release_secret(rev: dict[str, Any]) -> dict[str, Any]:
    """A revision as helm's secret driver stores it: Secret `sh.helm.release.v1.<release>.v<N>` of type
    `helm.sh/release.v1`, labelled name/owner/status/version, `data.release` = base64 (the Secret's own
    encoding) of base64 of gzip of the release JSON."""
    packed = base64.b64encode(gzip.compress(json.dumps(_public(rev)).encode(), mtime=0))
    labels = {"name": rev["name"], "owner": "helm", "status": rev["info"]["status"], "version": str(rev["version"])}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": f"sh.helm.release.v1.{rev['name']}.v{rev['version']}",
            "namespace": rev["namespace"],
            "labels": labels,
        },
        "type": "helm.sh/release.v1",
        "data": {"release": base64.b64encode(packed).decode()},
    }


def _kube_release_records(namespace: str, before: list[dict[str, Any]], after: list[dict[str, Any]]) -> None:
    """Write the revisions that changed (new, or a status moved on: pending -> deployed -> superseded) as
    release Secrets on $FAKE_HELM_KUBE_URL, and delete those helm no longer keeps (no-op when unset)."""
    base = os.environ.get(KUBE_URL_ENV, "").rstrip("/")
    if not base:
        return
    old = {r["version"]: r for r in before}
    new = {r["version"]: r for r in after}
    for version in sorted(old.keys() - new.keys()):
        _kube("DELETE", _object_url(base, release_secret(old[version]), namespace)[1])
    for version, rev in sorted(new.items()):
        if old.get(version) == rev:
            continue
        secret = release_secret(rev)
        coll, item = _object_url(base, secret, namespace)
        code, current = _kube("GET", item)
        if code == 200:
            version_now = (current.get("metadata") or {}).get("resourceVersion")
            if version_now:
                secret["metadata"]["resourceVersion"] = version_now
            code, reply = _kube("PUT", item, secret)
            if code in (404, 405):  # some fakes (kmock) have no PUT: fall back to a merge patch
                code, reply = _kube("PATCH", item, secret, "application/merge-patch+json")
        else:
            code, reply = _kube("POST", coll, secret)
        if code >= 300:
            raise HelmError(f"create: failed to create: {reply.get('message', reply)}")


def _kube_delete(manifest: str, namespace: str, release: str) -> None:
    base = os.environ.get(KUBE_URL_ENV, "").rstrip("/")
    if not base:
        return
    for obj in reversed(_kube_objects(manifest, namespace, release)):
        _kube("DELETE", _object_url(base, obj, namespace)[1])


# ---------------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------------


def cmd_version(ctx: _Ctx, pos: list[str], opts: dict[str, Any]) -> int:
    version = str(ctx.behaviour.get("version", DEFAULT_VERSION))
    fields = {"Version": version, "GitCommit": GIT_COMMIT, "GitTreeState": "clean", "GoVersion": "go1.22.7"}
    if opts.get("template"):
        _out(re.sub(r"\{\{\s*\.(\w+)\s*\}\}", lambda m: fields.get(m.group(1), ""), opts["template"]))
    elif opts.get("short"):
        _out(f"{version}+g{GIT_COMMIT[:7]}\n")
    else:
        _out("version.BuildInfo{" + ", ".join(f'{k}:"{v}"' for k, v in fields.items()) + "}\n")
    return 0


def cmd_lint(ctx: _Ctx, pos: list[str], opts: dict[str, Any]) -> int:
    """helm's lint command printing: messages per chart, then the summary (an error when any failed)."""
    helm = _helm()
    paths = pos or ["."]
    values = _user_values(opts)
    quiet = bool(opts.get("quiet"))
    sev_names = ["UNKNOWN", "INFO", "WARNING", "ERROR"]
    message, failed = [], 0
    for path in paths:
        result = helm.lint(
            path,
            values=values or None,
            strict=bool(opts.get("strict")),
            namespace=ctx.namespace,
            with_subcharts=bool(opts.get("with-subcharts")),
        )
        messages, errors = list(result.get("messages") or []), list(result.get("errors") or [])
        if ctx.take("lint") == "fail" and (Path(path) / "Chart.yaml").exists():
            err = str(ctx.behaviour.get("lint_error", "templates/deployment.yaml: injected lint failure"))
            messages.append({"severity": 3, "path": "templates/", "error": err})
            errors.append(err)
        if quiet and not errors and not any(m["severity"] > 1 for m in messages):
            continue
        message.append(f"==> Linting {path}\n")
        if not messages:
            message += [f"Error {e}\n" for e in errors]
        for m in messages:
            if not quiet or m["severity"] > 1:
                message.append(f"[{sev_names[m['severity']]}] {m['path']}: {m['error']}\n")
        failed += bool(errors)
        message.append("\n")
    _out("".join(message))
    summary = f"{len(paths)} chart(s) linted, {failed} chart(s) failed"
    if failed:
        raise HelmError(summary)
    _out(summary + "\n")
    return 0


def cmd_template(ctx: _Ctx, pos: list[str], opts: dict[str, Any]) -> int:
    if len(pos) == 1:
        pos = ["release-name", pos[0]]
    _need_args("template", pos, 2, "template [NAME] [CHART]")
    name, chart_path = pos
    values = _user_values(opts)
    with _load_chart(chart_path) as chart:
        manifests, hooks, _ = _render(chart, values, name, ctx.namespace, 1, bool(opts.get("is-upgrade")))
    if opts.get("no-hooks"):
        hooks = []
    if opts.get("show-only"):
        # -s matches the template path without the chart name, e.g. templates/deployment.yaml.
        docs = [(m["name"], m["content"]) for m in manifests] + [(h["path"], h["manifest"]) for h in hooks]
        chosen: list[tuple[str, str]] = []
        for pattern in opts["show-only"]:
            found = [d for d in docs if fnmatch.fnmatchcase(d[0].split("/", 1)[-1], pattern)]
            if not found:
                raise HelmError(f"could not find template {pattern} in chart")
            chosen += found
        _out("".join(f"---\n# Source: {path}\n{content}\n" for path, content in chosen))
        return 0
    text = _stream(manifests).strip() + "\n"
    skip_tests = bool(opts.get("skip-tests"))
    text += "".join(
        f"---\n# Source: {h['path']}\n{h['manifest']}\n" for h in hooks if not (skip_tests and "test" in h["events"])
    )
    _out(text)
    return 0


def _dry_run(opts: dict[str, Any]) -> bool:
    return opts.get("dry-run", "none") not in ("none", "false")


def _rollback_record(ctx: _Ctx, revs: list[dict[str, Any]], target: dict[str, Any]) -> dict[str, Any]:
    """A new revision copying `target`, as pkg/action/rollback.go builds it."""
    current = revs[-1]
    now = _go_rfc3339(ctx.now())
    return {
        "name": current["name"], "namespace": current["namespace"], "version": current["version"] + 1,
        "info": {
            "first_deployed": current["info"]["first_deployed"], "last_deployed": now, "deleted": "",
            "description": f"Rollback to {target['version']}", "status": "deployed",
            "notes": target["info"].get("notes", ""),
        },
        "chart": target["chart"], "config": target.get("config") or {},
        "computed": target.get("computed") or {}, "manifest": target["manifest"],
        "hooks": target.get("hooks") or [],
    }  # fmt: skip


def _supersede_deployed(revs: list[dict[str, Any]]) -> None:
    for rev in revs:
        if rev["info"]["status"] == "deployed":
            rev["info"]["status"] = "superseded"


def _prune(revs: list[dict[str, Any]], history_max: int) -> list[dict[str, Any]]:
    # --history-max (helm's CLI default 10): the oldest revisions go, so old rollback targets vanish.
    return revs[-history_max:] if history_max > 0 else revs


_CANCELLING = {signal.SIGTERM, signal.SIGINT}


def _hold_cancel_signals() -> None:
    """From the moment a pending revision is saved: a SIGTERM/SIGINT waits (blocked) until `_cancellable()`,
    as real helm's handler is in place for the whole upgrade, instead of killing the process outright and
    leaving the release pending."""
    signal.pthread_sigmask(signal.SIG_BLOCK, _CANCELLING)


def _cancellable() -> None:
    """SIGTERM/SIGINT become _Cancelled (the release is marked failed); one held since the save lands now."""

    def on_signal(signum: int, frame: object) -> NoReturn:
        raise _Cancelled

    for signum in _CANCELLING:
        signal.signal(signum, on_signal)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _CANCELLING)


def _sleep_cancellable(seconds: float | None, until: str | None = None) -> None:
    """Sleep (forever when None), or until the file `until` exists; SIGTERM/SIGINT become _Cancelled so
    the release is marked failed."""
    _cancellable()
    deadline = None if seconds is None else time.monotonic() + seconds
    while deadline is None or time.monotonic() < deadline:
        if until and Path(until).exists():
            return
        left = 3600.0 if deadline is None else max(0.0, deadline - time.monotonic())
        time.sleep(min(left, 0.05) if until else left if deadline is None else min(left, 1.0))


def cmd_upgrade(ctx: _Ctx, pos: list[str], opts: dict[str, Any], *, install_cmd: bool = False) -> int:
    """`upgrade [--install]` and `install`: render for real, record revisions, inject failures."""
    cmd = "install" if install_cmd else "upgrade"
    _need_args(cmd, pos, 2, f"{cmd} [RELEASE] [CHART]" if cmd == "upgrade" else "install [NAME] [CHART]")
    name, chart_path = pos
    if len(name) > 53 or not _RELEASE_NAME.match(name):
        raise HelmError(
            f"invalid release name, must match regex {_RELEASE_NAME.pattern} and the length must not be longer than 53"
        )
    timeout = _parse_duration(opts.get("timeout", "5m0s"))
    history_max = int(opts.get("history-max", "10"))
    atomic_flag = "atomic" if opts.get("atomic") else "rollback-on-failure" if opts.get("rollback-on-failure") else ""
    dry_run, fmt = _dry_run(opts), opts.get("output", "table")
    ctx.check_reachable()
    new_values = _user_values(opts)
    chart = _load_chart(chart_path)

    with chart, _locked(ctx.state):
        revs = ctx.load(name)
        installing = not revs or revs[-1]["info"]["status"] == "uninstalled"
        if installing and not (install_cmd or opts.get("install")):
            raise HelmError(f'UPGRADE FAILED: "{name}" has no deployed releases')
        if not installing and install_cmd and not opts.get("replace"):
            raise HelmError("INSTALLATION FAILED: cannot re-use a name that is still in use")
        prefix = "INSTALLATION FAILED" if installing else "UPGRADE FAILED"
        config = new_values
        if not installing:
            last = revs[-1]
            if last["info"]["status"].startswith("pending-"):
                raise HelmError(f"{prefix}: another operation (install/upgrade/rollback) is in progress")
            deployed = [r for r in revs if r["info"]["status"] == "deployed"]
            if not deployed and last["info"]["status"] not in ("failed", "superseded"):
                raise HelmError(f'{prefix}: "{name}" has no deployed releases')
            current = deployed[-1] if deployed else last
            old = current.get("config") or {}
            if opts.get("reuse-values") or opts.get("reset-then-reuse-values"):
                config = _merge_maps(old, new_values)
            elif not opts.get("reset-values") and not new_values and old:
                config = old  # helm reuses the last values when none are given
        if installing and fmt == "table":
            _out(f'Release "{name}" does not exist. Installing it now.\n')
        revision = revs[-1]["version"] + 1 if revs else 1
        try:
            manifests, hooks, notes = _render(chart, config, name, ctx.namespace, revision, not installing)
            manifest = _stream(manifests)
            computed = chart.merge_values(config)
        except HelmError as exc:
            raise HelmError(f"{prefix}: {exc}") from exc
        now = _go_rfc3339(ctx.now())
        first = revs[0]["info"]["first_deployed"] if revs and not installing else now
        rec: dict[str, Any] = {
            "name": name, "namespace": ctx.namespace, "version": revision,
            "info": {"first_deployed": first, "last_deployed": now, "deleted": "",
                     "description": "Initial install underway" if installing else "Preparing upgrade",
                     "status": "pending-install" if installing else "pending-upgrade", "notes": notes},
            "chart": _chart_json(chart), "config": config, "computed": computed,
            "manifest": manifest, "hooks": hooks,
        }  # fmt: skip
        if dry_run:
            rec["info"]["description"] = opts.get("description") or "Dry run complete"
            if fmt == "table" and not installing:
                _out(f'Release "{name}" has been upgraded. Happy Helming!\n')
            _out(
                _encode(
                    _public(rec),
                    fmt,
                    lambda: _status_table(rec, dry_run=True, hide_notes=bool(opts.get("hide-notes"))),
                )
            )
            return 0
        _hold_cancel_signals()
        ctx.save(name, [*revs, rec])  # pending-* is visible to concurrent status/history calls

    mode = ctx.take("upgrade")
    cause = ""
    try:
        _cancellable()
        if mode in ("hang", "timeout", "atomic-rollback", "slow"):
            # Like helm: the objects are applied first, then the --wait is what never finishes.
            _kube_apply(manifest, ctx.namespace, name)
        if mode == "hang":
            _sleep_cancellable(None)
        elif mode == "slow":
            _sleep_cancellable(float(ctx.behaviour.get("slow_seconds", 5)))
        elif mode in ("timeout", "atomic-rollback"):
            override = ctx.behaviour.get("timeout_seconds")
            wait = float(override) if override is not None else (timeout if mode == "timeout" else 0.0)
            _sleep_cancellable(wait, ctx.behaviour.get("wait_for"))
            cause = "context deadline exceeded"
        elif mode == "fail":
            cause = str(ctx.behaviour.get("fail_message", DEFAULT_FAIL_MESSAGE.format(name=name)))
        else:
            _kube_apply(manifest, ctx.namespace, name)
    except _Cancelled:
        cause = "context canceled"
    except HelmError as exc:
        cause = str(exc)

    with _locked(ctx.state):
        revs = ctx.load(name)
        rec = next(r for r in revs if r["version"] == revision)
        if not cause:
            _supersede_deployed(revs)
            rec["info"]["status"] = "deployed"
            rec["info"]["description"] = opts.get("description") or (
                "Install complete" if installing else "Upgrade complete"
            )
            ctx.save(name, _prune(revs, history_max))
            if fmt == "table" and not installing:
                _out(f'Release "{name}" has been upgraded. Happy Helming!\n')
            _out(_encode(_public(rec), fmt, lambda: _status_table(rec, hide_notes=bool(opts.get("hide-notes")))))
            return 0
        rec["info"]["status"] = "failed"
        rec["info"]["description"] = f'{"Release" if installing else "Upgrade"} "{name}" failed: {cause}'
        if not atomic_flag:
            ctx.save(name, revs)
            raise HelmError(f"{prefix}: {cause}")
        if installing:
            # An atomic install that fails is uninstalled again (history kept only for earlier revisions).
            ctx.save(name, [r for r in revs if r["version"] != revision])
            _kube_delete(manifest, ctx.namespace, name)
            raise HelmError(
                f"{prefix}: release {name} failed, and has been uninstalled due to {atomic_flag} being set: {cause}"
            )
        good = [r for r in revs if r["info"]["status"] in ("deployed", "superseded")]
        if not good:
            ctx.save(name, revs)
            raise HelmError(
                f"{prefix}: unable to find a previously successful release when attempting to rollback. "
                f"original upgrade error: {cause}"
            )
        back = _rollback_record(ctx, revs, good[-1])
        _supersede_deployed(revs)
        ctx.save(name, _prune([*revs, back], history_max))
    _kube_apply(back["manifest"], ctx.namespace, name)
    raise HelmError(
        f"{prefix}: release {name} failed, and has been rolled back due to {atomic_flag} being set: {cause}"
    )


def _get_rev(ctx: _Ctx, name: str, revision: str | None) -> dict[str, Any]:
    ctx.check_reachable()
    revs = ctx.load(name)
    if revision not in (None, "", "0"):
        revs = [r for r in revs if str(r["version"]) == str(revision)]
    if not revs:
        raise HelmError("release: not found")
    return revs[-1]


def cmd_status(ctx: _Ctx, pos: list[str], opts: dict[str, Any]) -> int:
    _need_args("status", pos, 1, "status RELEASE_NAME")
    rev = _get_rev(ctx, pos[0], opts.get("revision"))
    show_desc = bool(opts.get("show-desc"))
    _out(_encode(_public(rev), opts.get("output", "table"), lambda: _status_table(rev, show_desc=show_desc)))
    return 0


def cmd_history(ctx: _Ctx, pos: list[str], opts: dict[str, Any]) -> int:
    _need_args("history", pos, 1, "history RELEASE_NAME")
    ctx.check_reachable()
    revs = ctx.load(pos[0])
    if not revs:
        raise HelmError("release: not found")
    revs = revs[-int(opts.get("max", "256")) :]
    rows = [
        {"revision": r["version"], "updated": r["info"]["last_deployed"], "status": r["info"]["status"],
         "chart": f"{r['chart']['metadata']['name']}-{r['chart']['metadata']['version']}",
         "app_version": r["chart"]["metadata"].get("appVersion", ""), "description": r["info"]["description"]}
        for r in revs
    ]  # fmt: skip

    def table() -> str:
        head = ["REVISION", "UPDATED", "STATUS", "CHART", "APP VERSION", "DESCRIPTION"]
        # uitable's MaxColWidth=60 truncation, as helm history does.
        desc = [d if len(d) <= 60 else d[:57] + "..." for d in (r["description"] for r in rows)]
        body = [[str(r["revision"]), _ansic(r["updated"]), r["status"], r["chart"], r["app_version"], d]
                for r, d in zip(rows, desc, strict=True)]  # fmt: skip
        return _table([head, *body])

    _out(_encode(rows, opts.get("output", "table"), table))
    return 0


def cmd_get(ctx: _Ctx, sub: str, pos: list[str], opts: dict[str, Any]) -> int:
    _need_args(f"get {sub}", pos, 1, f"get {sub} RELEASE_NAME")
    rev = _get_rev(ctx, pos[0], opts.get("revision"))
    if sub == "values":
        every = bool(opts.get("all"))
        values = (rev.get("computed") if every else rev.get("config")) or None  # empty prints `null`, like helm
        header = "COMPUTED VALUES:\n" if every else "USER-SUPPLIED VALUES:\n"
        _out(_encode(values, opts.get("output", "table"), lambda: header + _go_yaml(values)))
    elif sub == "manifest":
        _out(rev["manifest"] + "\n")
    elif sub == "notes":
        if rev["info"].get("notes"):
            _out(f"NOTES:\n{rev['info']['notes']}\n")
    else:
        _out("".join(f"---\n# Source: {h['path']}\n{h['manifest']}\n" for h in rev.get("hooks") or []))
    return 0


def cmd_rollback(ctx: _Ctx, pos: list[str], opts: dict[str, Any]) -> int:
    if len(pos) not in (1, 2):
        raise HelmError(
            '"helm rollback" requires at least 1 argument\n\nUsage:  helm rollback <RELEASE> [REVISION] [flags]'
        )
    name = pos[0]
    try:
        wanted = int(pos[1]) if len(pos) == 2 else 0
    except ValueError as exc:
        raise HelmError(
            f'could not convert revision to a number: strconv.Atoi: parsing "{pos[1]}": invalid syntax'
        ) from exc
    timeout = _parse_duration(opts.get("timeout", "5m0s"))
    history_max = int(opts.get("history-max", "10"))
    ctx.check_reachable()
    with _locked(ctx.state):
        revs = ctx.load(name)
        if not revs:
            raise HelmError("release: not found")
        target_no = wanted or revs[-1]["version"] - 1
        target = next((r for r in revs if r["version"] == target_no), None)
        if target is None:
            raise HelmError(f"release has no {target_no} version")
        if _dry_run(opts):
            _out("Rollback was a success! Happy Helming!\n")
            return 0
        rec = _rollback_record(ctx, revs, target)
        rec["info"]["status"] = "pending-rollback"
        _hold_cancel_signals()
        ctx.save(name, [*revs, rec])

    mode, cause = ctx.take("rollback"), ""
    try:
        _cancellable()
        if mode == "hang":
            _sleep_cancellable(None)
        elif mode in ("timeout", "atomic-rollback"):
            override = ctx.behaviour.get("timeout_seconds")
            _sleep_cancellable(float(override) if override is not None else timeout)
            cause = "context deadline exceeded"
        elif mode == "fail":
            cause = str(ctx.behaviour.get("fail_message", DEFAULT_FAIL_MESSAGE.format(name=name)))
        else:
            _kube_apply(rec["manifest"], ctx.namespace, name)
    except _Cancelled:
        cause = "context canceled"
    except HelmError as exc:
        cause = str(exc)

    with _locked(ctx.state):
        revs = ctx.load(name)
        rec = next(r for r in revs if r["version"] == rec["version"])
        if cause:
            # rollback.go: the current release is superseded, the new one failed.
            revs[-2]["info"]["status"] = "superseded"
            rec["info"]["status"] = "failed"
            rec["info"]["description"] = f'Rollback "{name}" failed: {cause}'
            ctx.save(name, revs)
            raise HelmError(cause)
        _supersede_deployed(revs)
        rec["info"]["status"] = "deployed"
        ctx.save(name, _prune(revs, history_max))
    _out("Rollback was a success! Happy Helming!\n")
    return 0


def cmd_uninstall(ctx: _Ctx, pos: list[str], opts: dict[str, Any]) -> int:
    if not pos:
        raise HelmError(
            '"helm uninstall" requires at least 1 argument\n\nUsage:  helm uninstall RELEASE_NAME [...] [flags]'
        )
    ctx.check_reachable()
    for name in pos:
        with _locked(ctx.state):
            revs = ctx.load(name)
            if not revs or revs[-1]["info"]["status"] == "uninstalled":
                if opts.get("ignore-not-found"):
                    continue
                raise HelmError(f"uninstall: Release not loaded: {name}: release: not found")
            if _dry_run(opts):
                _out(f'release "{name}" uninstalled\n')
                continue
            _kube_delete(revs[-1]["manifest"], ctx.namespace, name)
            if opts.get("keep-history"):
                now = _go_rfc3339(ctx.now())
                description = opts.get("description") or "Uninstallation complete"
                revs[-1]["info"].update(status="uninstalled", deleted=now, description=description)
                ctx.save(name, revs)
            else:
                ctx.save(name, [])
        _out(f'release "{name}" uninstalled\n')
    return 0


def cmd_list(ctx: _Ctx, pos: list[str], opts: dict[str, Any]) -> int:
    ctx.check_reachable()
    files = sorted((ctx.state / "releases").glob("*.json"))
    states = {s for s in ("deployed", "failed", "superseded", "uninstalled", "uninstalling") if opts.get(s)}
    if opts.get("pending"):
        states |= {"pending-install", "pending-upgrade", "pending-rollback"}
    states = states or {"deployed", "failed"}
    rows = []
    for path in files:
        ns, _, name = path.stem.partition("__")
        if not opts.get("all-namespaces") and ns != ctx.namespace:
            continue
        if opts.get("filter") and not re.search(opts["filter"], name):
            continue
        last = _read_json(path, [])[-1:]
        if not last or not (opts.get("all") or last[0]["info"]["status"] in states):
            continue
        r = last[0]
        meta = r["chart"]["metadata"]
        rows.append({
            "name": name, "namespace": ns, "revision": str(r["version"]),
            "updated": _go_time_string(r["info"]["last_deployed"]), "status": r["info"]["status"],
            "chart": f"{meta['name']}-{meta['version']}", "app_version": meta.get("appVersion", ""),
        })  # fmt: skip
    if opts.get("short"):
        _out("".join(r["name"] + "\n" for r in rows))
        return 0

    def table() -> str:
        head = ["NAME", "NAMESPACE", "REVISION", "UPDATED", "STATUS", "CHART", "APP VERSION"]
        body = [[r[k] for k in ("name", "namespace", "revision", "updated", "status", "chart", "app_version")]
                for r in rows]  # fmt: skip
        rows_out = body if opts.get("no-headers") else [head, *body]
        return _table(rows_out) if rows_out else ""

    _out(_encode(rows, opts.get("output", "table"), table))
    return 0


# ---------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------


def _record(state: Path, argv: list[str]) -> None:
    line = json.dumps({
        "argv": argv,
        "env_kube_context": os.environ.get("HELM_KUBECONTEXT"),
        "env_kubeconfig": os.environ.get("KUBECONFIG"),
        # Names only (values may be secrets): what plate-bot let through to helm (workers.helm).
        "env_names": sorted(os.environ),
        "pid": os.getpid(),
        "at": time.time(),
    })  # fmt: skip
    with _locked(state), open(state / "argv.jsonl", "a") as fh:
        fh.write(line + "\n")


def _dispatch(ctx: _Ctx, cmd: str, pos: list[str], opts: dict[str, Any]) -> int:
    if cmd == "version":
        return cmd_version(ctx, pos, opts)
    if cmd == "lint":
        return cmd_lint(ctx, pos, opts)
    if cmd == "template":
        return cmd_template(ctx, pos, opts)
    if cmd in ("upgrade", "install"):
        return cmd_upgrade(ctx, pos, opts, install_cmd=cmd == "install")
    if cmd == "status":
        return cmd_status(ctx, pos, opts)
    if cmd == "history":
        return cmd_history(ctx, pos, opts)
    if cmd.startswith("get "):
        return cmd_get(ctx, cmd[4:], pos, opts)
    if cmd == "rollback":
        return cmd_rollback(ctx, pos, opts)
    if cmd == "uninstall":
        return cmd_uninstall(ctx, pos, opts)
    return cmd_list(ctx, pos, opts)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    state_env = os.environ.get(STATE_ENV)
    if not state_env:
        sys.stderr.write(f"Error: {STATE_ENV} is not set: the fake helm needs a state directory\n")
        return 1
    state = Path(state_env)
    state.mkdir(parents=True, exist_ok=True)
    _record(state, argv)
    behaviour = _read_json(state / "behaviour.json", {})
    if behaviour.get("delay"):
        time.sleep(float(behaviour["delay"]))
    code = 1
    try:
        cmd, idx = _find_command(argv)
        if not cmd:
            raise HelmError("a command is required (fake helm)")
        if cmd == "get":
            raise HelmError('"helm get" requires a subcommand: values, manifest, notes, hooks')
        if cmd not in _COMMANDS:
            raise HelmError(f'unknown command "{cmd}" for "helm"\nRun \'helm --help\' for usage.')
        spec, short = _COMMANDS[cmd]
        pos, opts = _parse_args([a for i, a in enumerate(argv) if i not in idx], spec, short)
        code = _dispatch(_Ctx(state, opts), cmd, pos, opts)
    except HelmError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        code = 1
    finally:
        # Appended on every call, like the warnings real helm writes; plate-bot must redact what it relays.
        extra = behaviour.get("stderr_extra")
        if extra:
            sys.stderr.write(str(extra).rstrip("\n") + "\n")
        sys.stdout.flush()
        sys.stderr.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
