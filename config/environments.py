"""The environments file: which clusters, namespaces and releases plate-bot may touch, and who may ask.

Validated once at start-up; a bad file stops the process with one line naming the file, the key and
the problem (`ConfigError`). Paths in the file are relative to the file's own directory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from config.charts import ChartPolicy, ChartSource, chart_source
from config.durations import Duration
from config.freeze import Freeze

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
SLACK_ID = r"^[UWSCGD][A-Z0-9]{2,30}$"
ENV_NAME = r"^[a-z][a-z0-9-]{0,31}$"

KubeName = Annotated[str, Field(pattern=DNS_LABEL)]
# Helm's own limit for a release name (53 characters, a DNS label); an app is named like one.
RELEASE = r"[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?"
ReleaseName = Annotated[str, Field(pattern=f"^{RELEASE}$")]
SlackUserOrGroup = Annotated[str, Field(pattern=r"^[UWS][A-Z0-9]{2,30}$")]
# Who may do something: user ids, user group ids (S…, expanded through Slack), or "*" for everyone.
Audience = list[Annotated[str, Field(pattern=r"^(\*|[UWS][A-Z0-9]{2,30})$")]]
SlackChannel = Annotated[str, Field(pattern=r"^[CGD][A-Z0-9]{2,30}$")]
REGISTRY_HOST = r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})(:[0-9]{1,5})?$"
# host[:port]/repository:tag or @sha256:digest; it ends up in a pod spec and registry URLs.
IMAGE_REF = (
    r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}(:[0-9]{1,5})?/[a-z0-9]+(?:[._/-][a-z0-9]+)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})$"
)


class ConfigError(Exception):
    """The environments file cannot be used; the message is one line meant for the operator."""


class HarborChecks(BaseModel):
    """Names used by harbor-verify and harbor-bootstrap; defaults are the seed's."""

    model_config = ConfigDict(extra="forbid")

    eso_namespace: KubeName = "external-secrets-system"
    token_secret: KubeName = "openbao-token"
    service_account: KubeName = "harbor-secret-reader"
    secret_store: KubeName = "openbao-harbor"
    external_secret: KubeName = "harbor-registry-secret"
    docker_secret: KubeName = "harbor-docker-secret"
    registry: str = Field(default="harbor.example.com", pattern=REGISTRY_HOST)
    test_image: str = Field(default="harbor.example.com/plate/plate-web:1.4.0", pattern=IMAGE_REF)
    pod_timeout: Duration = 120
    # Where the chain's objects live and the test pod runs (the pull secret must be in the pod's
    # namespace); defaults to the environment's namespace.
    namespace: KubeName | None = None
    # More namespaces that must exist (the seed checks plate-stg and plate-prod); bootstrap creates them.
    namespaces: list[KubeName] = []
    # The registry's base URL for the v2 API check; default https://<host of test_image>.
    registry_url: str | None = Field(default=None, pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$")
    # harbor-bootstrap: the four manifests and the Argo CD Application, relative to this file.
    manifests_dir: Path | None = None
    argocd_app: KubeName = "harbor-auth-eso"
    sync_timeout: Duration = 300


class RegistryAccess(BaseModel):
    """A registry besides the environment's Harbor whose images plate-bot resolves at plan time."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(pattern=REGISTRY_HOST)  # as images name it: ghcr.io, registry.example.com:5000
    # Where its v2 API answers; default https://<host>.
    url: str | None = Field(default=None, pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$")
    # A docker-config Secret in the environment's namespace; default: the Harbor pull secret.
    pull_secret: KubeName | None = None


class ImagePolicy(BaseModel):
    """What a plan requires of the images it would run (Harbor's scan results and signatures)."""

    model_config = ConfigDict(extra="forbid")

    # More critical (high) vulnerabilities than this in an image: the policy is violated.
    max_critical: int | None = Field(default=None, ge=0)
    max_high: int | None = Field(default=None, ge=0)
    # refuse: the plan fails; extra_approval: it may go on with one more approval than usual.
    on_violation: Literal["refuse", "extra_approval"] = "refuse"
    # An image Harbor has not scanned (or that is not in Harbor) violates the policy.
    require_scan: bool = False
    # An image without a cosign signature in Harbor violates the policy.
    require_signature: bool = False


class ChartFields(BaseModel):
    """Where a chart comes from (config/charts.py), wherever `chart` may be written (an app, or an environment
    in the old layout): `chart` alone is a directory or oci://host/project/chart (with `version`); `chart` +
    `repo` + `version` a Helm repository's; `git` + `ref` + `path` a git one's."""

    chart: str = ""
    version: str | None = None
    repo: str | None = None
    git: str | None = None
    ref: str | None = None
    path: str | None = None

    @property
    def chart_source(self) -> ChartSource:
        """The source these fields describe; ValueError naming the field when they do not fit together."""
        return chart_source(self.chart, self.version, self.repo, self.git, self.ref, self.path)

    def chart_fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ChartFields.model_fields}


class App(ChartFields):
    """One Helm release of an environment: a service (web, api, workers, cron). Unset overrides take the
    environment's value. `name` is filled in from the key in `apps:`."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    release: ReleaseName | None = None  # default: the app's name
    values: list[Path] = []
    namespace: KubeName | None = None  # default: the environment's
    argocd_app: KubeName | None = None
    approvals_required: int | None = Field(default=None, ge=0, le=5)
    approvers: list[SlackUserOrGroup] | None = None
    requesters: Audience | None = None
    readers: Audience | None = None
    diagnosers: Audience | None = None
    helm_timeout: Duration | None = None
    rollout_timeout: Duration | None = None

    @model_validator(mode="after")
    def _source_fits(self) -> Self:
        self.chart_source  # noqa: B018 - raises ValueError naming the field
        return self


# What an app may set for itself; everything else (cluster, channels, freezes, harbor) is the environment's.
_APP_OVERRIDES = (
    "approvals_required", "approvers", "requesters", "readers", "diagnosers", "helm_timeout", "rollout_timeout",
)  # fmt: skip


class Environment(ChartFields):
    """One deploy target: a cluster context and namespace, who may ask and approve, and its apps. `name` is
    filled in from the key in `environments:`.

    An environment written the old way (`release`/`chart`/`values` at its top) is one app named after its
    release. `for_app` gives the environment as one app sees it: that app's release, chart, values,
    namespace and overrides in the places procedures read them, so a procedure works on one release."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    aliases: list[Annotated[str, Field(pattern=ENV_NAME)]] = []
    kube_context: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,252}$")
    # This environment's own kubeconfig file (a remote cluster's credentials, mounted into worker and
    # watch only); unset: the process's KUBECONFIG, else in-cluster.
    kubeconfig: Path | None = None
    # The cluster name the context must point at; defaults to whatever the context names.
    cluster: str | None = None
    # Production environments refuse clusters whose name lacks `prod`/`production` (the seed's check)
    # unless the name is listed here.
    production: bool | None = None
    allowed_cluster_names: list[str] = []
    # Optional pin of the cluster's identity: the UID of the kube-system namespace.
    cluster_uid: str | None = None
    namespace: KubeName
    # The old single-app layout (with the chart fields); with `apps:` these are set by `for_app` only.
    release: str = Field(default="", pattern=f"^({RELEASE})?$")
    values: list[Path] = []
    # A docker-config Secret in the environment's namespace with credentials for chart registries and
    # Helm repositories; unset: the Harbor pull secret (harbor.docker_secret).
    chart_pull_secret: KubeName | None = None
    apps: dict[ReleaseName, App] = {}
    default_app: str | None = None
    approvals_required: int = Field(default=0, ge=0, le=5)
    approvers: list[SlackUserOrGroup] = []
    requesters: Audience = ["*"]
    # May run the read verbs (status, history, diagnose, argocd, harbor-verify, apps).
    readers: Audience = ["*"]
    # May run diagnose, which shows pod logs; unset: the readers.
    diagnosers: Audience | None = None
    channels: list[SlackChannel] = []
    approval_ttl: Duration = 900
    helm_timeout: Duration = 600
    # After helm --wait, how long the API check may take to see every workload rolled out and Ready.
    rollout_timeout: Duration = 300
    incident_channel: SlackChannel | None = None
    argocd_app: KubeName | None = None
    argocd_namespace: KubeName = "argocd"
    harbor: HarborChecks = HarborChecks()
    # Registries besides Harbor whose image tags a plan resolves to digests (the approval binds to them).
    registries: list[RegistryAccess] = []
    image_policy: ImagePolicy = ImagePolicy()
    freeze: Freeze | None = None
    # The app this view is of ("" for the environment itself); set by `for_app`, never in the file.
    _app: str = PrivateAttr(default="")
    # Written the old way: its one app keeps the environment's name in Redis keys (locks, backups, records),
    # so records written before apps existed stay readable.
    _single: bool = PrivateAttr(default=False)

    @property
    def is_production(self) -> bool:
        if self.production is not None:
            return self.production
        return self.approvals_required > 0 or any((a.approvals_required or 0) > 0 for a in self.apps.values())

    @property
    def job_timeout(self) -> int:
        """RQ's hard limit: helm's own timeout must run out first, with room for the steps around it."""
        return self.helm_timeout + self.rollout_timeout + 300

    @property
    def app(self) -> str:
        """The app this view is of; "" for the whole environment."""
        return self._app

    @property
    def key(self) -> str:
        """What names this release in Redis (its lock, backups, change and release records): environment +
        namespace + release. The whole environment, and the one app of an old-style one, use the name."""
        if not self._app or self._single:
            return self.name
        return f"{self.name}/{self.namespace}/{self.release}"

    @property
    def label(self) -> str:
        """How messages name it: `prod`, or `prod/plate-api` when the environment has several apps."""
        return self.name if not self._app or len(self.apps) < 2 else f"{self.name}/{self._app}"

    def app_names(self) -> list[str]:
        return list(self.apps)

    def for_app(self, name: str | None = None) -> Environment:
        """The environment as app `name` (default: `default_app`) sees it; KeyError if there is none."""
        name = name or self.default_app
        if name is None or name not in self.apps:
            raise KeyError(name)
        app = self.apps[name]
        changes: dict[str, Any] = {
            "release": app.release or name,
            **app.chart_fields(),
            "values": app.values,
            "namespace": app.namespace or self.namespace,
            # An old-style environment's `argocd_app` is its one app's.
            "argocd_app": app.argocd_app if app.argocd_app is not None or not self._single else self.argocd_app,
        }
        changes.update({k: getattr(app, k) for k in _APP_OVERRIDES if getattr(app, k) is not None})
        view = self.model_copy(update=changes)
        view._app, view._single = name, self._single
        return view

    def lock_blockers(self) -> list[str]:
        """The other lock keys that must be free for this one to be taken: an app waits for the whole
        environment (harbor-bootstrap), the whole environment for every app."""
        if self._app:
            return [] if self._single else [self.name]
        return [k for k in (self.for_app(a).key for a in self.apps) if k != self.name]

    def kubeconfig_or(self, default: str | None) -> str | None:
        """The kubeconfig file for this environment: its own, else the process's (`default`)."""
        return str(self.kubeconfig) if self.kubeconfig is not None else default

    def registry_hosts(self) -> frozenset[str]:
        """The environment's Harbor host (as images name it, and as `registry_url` reaches it): charts
        may come from there without listing it in charts.allowed_hosts."""
        hosts = {self.harbor.registry.lower()}
        if self.harbor.registry_url:
            hosts.add(self.harbor.registry_url.split("://", 1)[1].rstrip("/").lower())
        return frozenset(hosts)

    def may_diagnose(self) -> Audience:
        return self.diagnosers if self.diagnosers is not None else self.readers

    @model_validator(mode="after")
    def _apps(self) -> Self:
        source = {k: v for k, v in self.chart_fields().items() if v}
        old_style = self.release or source or self.values
        if self.apps and old_style:
            raise ValueError("give either `apps:` or release/chart/values at the environment's level, not both")
        if not self.apps:
            if not self.release or not (self.chart or self.git):
                raise ValueError("an environment needs `apps:`, or `release` and `chart`")
            single = App(name=self.release, release=self.release, values=self.values, **source)
            self.apps = {self.release: single}
            self._single = True
        releases: dict[tuple[str, str], str] = {}
        for name, app in self.apps.items():
            app.name = name
            where = (app.namespace or self.namespace, app.release or name)
            if where in releases:
                raise ValueError(f"apps {releases[where]} and {name} are the same release {where[1]} in {where[0]}")
            releases[where] = name
        if self.default_app is None and len(self.apps) == 1:
            self.default_app = next(iter(self.apps))
        if self.default_app is not None and self.default_app not in self.apps:
            raise ValueError(f"default_app {self.default_app!r} is not one of the apps: {', '.join(self.apps)}")
        return self

    @model_validator(mode="after")
    def _approvers_exist(self) -> Self:
        if self.approvals_required > 0 and not self.approvers:
            raise ValueError("approvals_required > 0 needs at least one entry in approvers")
        for name, app in self.apps.items():
            needed = self.approvals_required if app.approvals_required is None else app.approvals_required
            if needed > 0 and not (self.approvers if app.approvers is None else app.approvers):
                raise ValueError(f"app {name}: approvals_required > 0 needs at least one entry in approvers")
        return self


class SlackWorkspace(BaseModel):
    """Whose Slack requests count. Slack Connect and Enterprise Grid put people from other workspaces and
    organisations in shared channels, where they can type `/plate` and click buttons."""

    model_config = ConfigDict(extra="forbid")

    # The installed workspace; unset: the bot token's own (auth.test), learned at start-up.
    team_id: str | None = Field(default=None, pattern=r"^T[A-Z0-9]{2,30}$")
    # An Enterprise Grid organisation: requests from any of its workspaces count (team_id then optional).
    enterprise_id: str | None = Field(default=None, pattern=r"^E[A-Z0-9]{2,30}$")
    # The Slack app's id (api_app_id in every payload); unset: not checked.
    app_id: str | None = Field(default=None, pattern=r"^A[A-Z0-9]{2,30}$")
    # Guests and people from other organisations may never request or approve changes, whatever
    # `requesters`/`approvers` say, unless listed here by user id.
    allowed_external_users: list[Annotated[str, Field(pattern=r"^[UW][A-Z0-9]{2,30}$")]] = []


class PlateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    incident_channel: SlackChannel | None = None
    audit_channel: SlackChannel | None = None
    slack: SlackWorkspace = SlackWorkspace()
    # Where charts may be fetched from (oci://, Helm repositories, git).
    charts: ChartPolicy = ChartPolicy()
    # Who may run `plate-bot admin break-lock` (users, or groups resolved with the bot token); each break
    # is audited as lock.broken. Empty: nobody may break a lock.
    admins: list[SlackUserOrGroup] = []
    environments: dict[Annotated[str, Field(pattern=ENV_NAME)], Environment]

    @field_validator("environments")
    @classmethod
    def _non_empty(cls, value: dict[str, Environment]) -> dict[str, Environment]:
        if not value:
            raise ValueError("at least one environment is required")
        return value

    @model_validator(mode="after")
    def _names_unique(self) -> Self:
        seen: dict[str, str] = {}
        for name, env in self.environments.items():
            env.name = name
            for alias in (name, *env.aliases):
                if alias in seen and seen[alias] != name:
                    raise ValueError(f"name or alias {alias!r} is used by both {seen[alias]} and {name}")
                seen[alias] = name
        return self

    @model_validator(mode="after")
    def _chart_hosts_allowed(self) -> Self:
        for name, env in self.environments.items():
            for app_name, app in env.apps.items():
                source = app.chart_source
                if not source.is_remote:
                    continue
                refusal = self.charts.refusal(source.location, env.registry_hosts(), git=source.kind == "git")
                if refusal:
                    raise ValueError(f"environments.{name}: app {app_name}: {refusal}")
        return self

    def resolve(self, name: str) -> Environment | None:
        """Environment by name or alias, case-insensitively."""
        wanted = name.lower()
        for env in self.environments.values():
            if wanted == env.name or wanted in env.aliases:
                return env
        return None

    def names(self) -> list[str]:
        return list(self.environments)


def _location(loc: tuple[object, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def parse_config(data: object, source: str = "<config>", base_dir: Path | None = None) -> PlateConfig:
    """Validate an already-parsed document; relative chart/values paths are made absolute from base_dir."""
    try:
        config = PlateConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        message = re.sub(r"^(Value error|Assertion failed), ", "", err["msg"])
        raise ConfigError(f"{source}: {_location(err['loc'])}: {message}{more}") from None
    if base_dir is not None:
        for env in config.environments.values():
            if env.chart and env.chart_source.kind == "local":
                env.chart = str((base_dir / env.chart).resolve())
            env.values = [(base_dir / v).resolve() for v in env.values]
            if env.kubeconfig is not None:
                env.kubeconfig = (base_dir / env.kubeconfig).resolve()
            for app in env.apps.values():
                if app.chart_source.kind == "local":
                    app.chart = str((base_dir / app.chart).resolve())
                app.values = [(base_dir / v).resolve() for v in app.values]
            if env.harbor.manifests_dir is not None:
                env.harbor.manifests_dir = (base_dir / env.harbor.manifests_dir).resolve()
    return config


def load_config(path: str | Path) -> PlateConfig:
    """Read and validate the environments file at `path`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the environments file: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the environments file must be a mapping with an `environments:` key")
    return parse_config(data, str(path), path.parent)
