"""The one module that runs the helm CLI.

argv lists only (never a shell); every value is checked against a strict pattern before it joins argv,
and every call carries the environment's `--kube-context` and `-n`, so helm and the API checks can
never look at different clusters. The child runs in its own process group: on a timeout, or when the
job itself is stopped, the whole group is killed, leaving no zombie helm or plugin processes. If the
worker is SIGKILLed (no code of ours runs), the kernel sends helm SIGTERM (workers.lifetime).

helm gets an explicit environment (`helm_environment`), built from an allow-list: what helm, the
client-go it embeds and the exec credential plugins of a kubeconfig read. plate-bot's own secrets
(`SLACK_*`, `REDIS_*`, `PLATE_*`, `REDISCLI_AUTH`) never reach it, nor does anything not listed: a
value the worker holds is not handed to a chart's plugins, post-renderers or helm's debug output.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.redact import REDACTOR
from workers.errors import HelmError
from workers.lifetime import preexec_die_with_parent

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?$")
_CONTEXT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,252}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_SET_KEY = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")
STDERR_TAIL = 1500

# --- helm's environment ----------------------------------------------------------------------------------
# Exact names helm may see.
HELM_ENV_NAMES = frozenset(
    {
        # the process itself
        "PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "TZ", "LANG", "LANGUAGE",
        # client-go: a kubeconfig, or in-cluster config (the ServiceAccount token is a file; client-go
        # needs the API address from these two), and its discovery cache
        "KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "KUBECACHEDIR",
        # proxies, as Go's net/http reads them (both spellings)
        "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "no_proxy", "all_proxy",
        # trust store for registries / API servers with a private CA
        "SSL_CERT_FILE", "SSL_CERT_DIR",
        # OCI registry credentials file (a path) for oci:// charts
        "DOCKER_CONFIG",
        # Go runtime tuning of the helm binary
        "GOMAXPROCS", "GOMEMLIMIT", "GODEBUG",
        # GKE's exec plugin (gke-gcloud-auth-plugin)
        "USE_GKE_GCLOUD_AUTH_PLUGIN",
    }
)  # fmt: skip
# Prefixes helm may see: locale, helm's own settings (HELM_CACHE_HOME, HELM_CONFIG_HOME, HELM_DATA_HOME,
# HELM_DRIVER, HELM_PLUGINS, HELM_REGISTRY_CONFIG, HELM_REPOSITORY_*, HELM_KUBE* ...), XDG dirs helm falls
# back on, and what the clouds' exec credential plugins read: `aws eks get-token` / aws-iam-authenticator
# (AWS_PROFILE, AWS_REGION, AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE, AWS_CONTAINER_CREDENTIALS_FULL_URI,
# AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE ...), gke-gcloud-auth-plugin (GOOGLE_APPLICATION_CREDENTIALS,
# CLOUDSDK_*), kubelogin (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE, AAD_*).
# These are the cluster's credentials, meant for helm. FAKE_HELM_* configures the sandbox's fake helm
# (sandbox/helm.py: its state directory and loopback API URL); it never holds a secret.
HELM_ENV_PREFIXES = ("LC_", "HELM_", "XDG_", "AWS_", "GOOGLE_", "CLOUDSDK_", "AZURE_", "AAD_", "FAKE_HELM_")
# Never passed, whatever the allow-list or PLATE_HELM_ENV_ALLOW says: plate-bot's Slack tokens, its Redis
# URL/password (a Redis writer runs code in the worker) and every plate-bot setting (PLATE_BACKUP_KEY ...).
HELM_ENV_DENIED_PREFIXES = ("SLACK_", "REDIS_", "PLATE_")
HELM_ENV_DENIED_NAMES = frozenset({"REDISCLI_AUTH"})
# Operators whose exec plugin reads something else (VAULT_ADDR, OCI_CLI_*) list it here: comma-separated
# names, or prefixes ending in `*`. The deny rules above still win.
HELM_ENV_ALLOW_VAR = "PLATE_HELM_ENV_ALLOW"


def _denied(name: str) -> bool:
    # Case-insensitive: plate-bot's settings are read case-insensitively (slack_bot_token counts too).
    upper = name.upper()
    return upper in HELM_ENV_DENIED_NAMES or upper.startswith(HELM_ENV_DENIED_PREFIXES)


def helm_environment(environ: Mapping[str, str], kubeconfig: str | None = None) -> dict[str, str]:
    """The environment helm runs with: the allowed part of `environ` (the worker's own environment), plus
    `KUBECONFIG` when plate-bot was given one."""
    extra_names: set[str] = set()
    extra_prefixes: list[str] = []
    for item in environ.get(HELM_ENV_ALLOW_VAR, "").split(","):
        item = item.strip()
        if item.endswith("*") and len(item) > 1:
            extra_prefixes.append(item[:-1])
        elif item:
            extra_names.add(item)
    prefixes = (*HELM_ENV_PREFIXES, *extra_prefixes)
    env = {
        name: value
        for name, value in environ.items()
        if not _denied(name) and (name in HELM_ENV_NAMES or name in extra_names or name.startswith(prefixes))
    }
    if kubeconfig:
        env["KUBECONFIG"] = kubeconfig
    return env


# What helm prints before its error that is not the error: Helm 4's notice for flags it deprecated (plate-bot
# keeps `--atomic`, which Helm 3 needs and Helm 4 still honours) and client-go's warnings.
_NOISE = re.compile(r"^(WARNING:|W\d{4} |Flag --\S+ has been deprecated)")


def headline(stderr: str) -> str:
    """The line of helm's stderr that says what went wrong: its `Error:` line, else the first line that is
    not a deprecation notice or a warning."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error:")]
    useful = errors or [ln for ln in lines if not _NOISE.match(ln)] or lines
    return useful[0] if useful else "no output"


def _checked(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.match(value):
        raise HelmError(f"refusing to pass an invalid {what} to helm")
    return value


def _tail(text: str, limit: int = STDERR_TAIL) -> str:
    text = REDACTOR(text.strip())
    return text if len(text) <= limit else "…" + text[-limit:]


@dataclass(frozen=True)
class HelmResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float


class Helm:
    def __init__(
        self, binary: str, *, namespace: str, kube_context: str | None = None, kubeconfig: str | None = None
    ) -> None:
        self.binary = binary
        self.namespace = _checked(namespace, _NAME, "namespace")
        self.kube_context = _checked(kube_context, _CONTEXT, "kube context") if kube_context else None
        self.kubeconfig = kubeconfig

    def argv(self, *args: str) -> list[str]:
        target = ["--kube-context", self.kube_context] if self.kube_context else []
        return [self.binary, *args, *target, "-n", self.namespace]

    def run(self, *args: str, timeout: float = 120) -> HelmResult:
        argv = self.argv(*args)
        env = helm_environment(os.environ, self.kubeconfig)
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                start_new_session=True,
                # Its own session keeps it out of our signals; this makes it die (SIGTERM: helm marks the
                # release failed) if this process is SIGKILLed instead of leaving an orphan helm behind.
                preexec_fn=preexec_die_with_parent(signal.SIGTERM),
            )
        except OSError as exc:
            raise HelmError(f"cannot run helm ({self.binary}): {exc.strerror}") from None
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            stdout, stderr = proc.communicate()
            raise HelmError(
                f"helm {args[0]} did not finish within {int(timeout)}s and was stopped",
                stderr=_tail(stderr),
                timed_out=True,
            ) from None
        except BaseException:
            # The job was stopped (RQ timeout, SIGTERM): take helm down with it.
            _kill_group(proc)
            raise
        result = HelmResult(argv, proc.returncode, stdout, stderr, time.monotonic() - started)
        if proc.returncode != 0:
            raise HelmError(
                f"helm {args[0]} failed: {_tail(headline(stderr), 300)}",
                stderr=_tail(stderr),
                returncode=proc.returncode,
            )
        return result

    # --- the calls plate-bot makes --------------------------------------------------------------------
    def status(self, release: str) -> dict[str, Any] | None:
        """`helm status -o json`, or None when the release does not exist."""
        try:
            out = self.run("status", _checked(release, _NAME, "release"), "-o", "json", timeout=60)
        except HelmError as exc:
            if "not found" in exc.stderr:
                return None
            raise
        return _json(out.stdout, "status")

    def history(self, release: str, limit: int = 10) -> list[dict[str, Any]]:
        try:
            out = self.run(
                "history", _checked(release, _NAME, "release"), "--max", str(int(limit)), "-o", "json", timeout=60
            )
        except HelmError as exc:
            if "not found" in exc.stderr:
                return []
            raise
        data = _json(out.stdout, "history")
        return data if isinstance(data, list) else []

    def get_values(self, release: str, revision: int | None = None) -> str:
        rev = ["--revision", str(int(revision))] if revision else []
        return self.run(
            "get", "values", _checked(release, _NAME, "release"), "--all", "-o", "yaml", *rev, timeout=60
        ).stdout

    def get_manifest(self, release: str, revision: int | None = None) -> str:
        rev = ["--revision", str(int(revision))] if revision else []
        return self.run("get", "manifest", _checked(release, _NAME, "release"), *rev, timeout=60).stdout

    def lint(self, chart: Path, values: list[Path], image_tag: str | None = None) -> HelmResult:
        return self.run("lint", str(chart), *_values_args(values, image_tag), timeout=120)

    def template(
        self,
        release: str,
        chart: Path,
        values: list[Path],
        image_tag: str | None = None,
        image_digest: str | None = None,
    ) -> str:
        release = _checked(release, _NAME, "release")
        args = _values_args(values, image_tag, image_digest)
        return self.run("template", release, str(chart), *args, timeout=120).stdout

    def upgrade(
        self,
        release: str,
        chart: Path,
        values: list[Path],
        *,
        image_tag: str | None,
        timeout: int,
        image_digest: str | None = None,
        dry_run: bool = False,
        description: str | None = None,
    ) -> HelmResult:
        args = ["upgrade", "--install", _checked(release, _NAME, "release"), str(chart)]
        args += _values_args(values, image_tag, image_digest)
        args += ["--atomic", "--wait", "--timeout", f"{int(timeout)}s"]
        if dry_run:
            args.append("--dry-run=server")
        if description:
            args += ["--description", description[:200]]
        # helm's own timeout runs out first; the margin lets --atomic finish its rollback.
        return self.run(*args, timeout=timeout + 120)

    def rollback(self, release: str, revision: int, *, timeout: int, dry_run: bool = False) -> HelmResult:
        args = [
            "rollback",
            _checked(release, _NAME, "release"),
            str(int(revision)),
            "--wait",
            "--timeout",
            f"{int(timeout)}s",
        ]
        if dry_run:
            args.append("--dry-run")
        return self.run(*args, timeout=timeout + 120)


def _values_args(values: list[Path], image_tag: str | None, image_digest: str | None = None) -> list[str]:
    args: list[str] = []
    for path in values:
        args += ["-f", str(path)]
    if image_tag is not None:
        args += ["--set-string", f"image.tag={_checked(image_tag, _TAG, 'image tag')}"]
    if image_digest is not None:  # deploy by digest: what was approved, whatever the tag points at later
        args += ["--set-string", f"image.digest={_checked(image_digest, _DIGEST, 'image digest')}"]
    return args


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise HelmError(f"helm {what} printed something that is not JSON") from None


def _kill_group(proc: subprocess.Popen[str]) -> None:
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
