"""What a procedure is, and the context each one gets: its request, environment, reporter and lazily
built helm/Kubernetes adapters.

`@procedure(name, title, steps)` turns a body into a `Procedure` value; it registers nothing. The one
table of procedures the worker runs is `workers.catalog.PROCEDURES`: a new verb adds a module with its
`@procedure` and one line there.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property

from config.environments import Environment, PlateConfig
from config.settings import Settings
from core.audit import Auditor
from core.errors import Unavailable
from core.requests import Request
from core.slack import SlackGateway
from core.store import Store
from workers.charts import ChartFetcher, FetchedChart, default_cache
from workers.errors import KubeError, StepFailed
from workers.harbor.chain import docker_config
from workers.helm import Helm
from workers.images import (
    Artifact,
    Image,
    Outcome,
    Resolution,
    artifact_from_record,
    artifact_record,
    parse,
    sources,
)
from workers.kube import KubeGateway
from workers.registry import ChartFetchError, harbor_artifacts, resolve_images
from workers.reporting import ThreadReporter
from workers.secrets import secret_namespaces

Body = Callable[["JobContext"], str]


@dataclass(frozen=True)
class Procedure:
    name: str  # a verb ("deploy") or a pre-approval job ("plan", "rollback-plan")
    title: str
    steps: list[tuple[str, str]]
    body: Body
    mutating: bool = False


def procedure(
    name: str, title: str, steps: list[tuple[str, str]], *, mutating: bool = False
) -> Callable[[Body], Procedure]:
    def make(body: Body) -> Procedure:
        return Procedure(name, title, steps, body, mutating)

    return make


@dataclass
class StepNote:
    text: str = ""


@dataclass
class JobContext:
    request: Request
    env: Environment
    config: PlateConfig
    settings: Settings
    store: Store
    slack: SlackGateway
    report: ThreadReporter
    clock: Callable[[], float] = field(default=time.time)
    started: float = field(default_factory=time.time)

    @cached_property
    def helm(self) -> Helm:
        self.learn_secrets()  # helm's stderr echoes values and manifests
        return Helm(
            self.settings.helm_bin,
            namespace=self.env.namespace,
            kube_context=self.env.kube_context,
            kubeconfig=self.env.kubeconfig_or(self.settings.kubeconfig),
        )

    @cached_property
    def kube(self) -> KubeGateway:
        kube = KubeGateway.connect(self.env.kube_context, self.env.kubeconfig_or(self.settings.kubeconfig))
        kube.learn_secrets(secret_namespaces(self.env))
        return kube

    @cached_property
    def chart(self) -> FetchedChart:
        """The environment's chart as a directory: fetched (and pinned) once per job."""
        source = self.env.chart_source
        fetcher = ChartFetcher(
            self.config.charts, self.settings.plate_chart_cache or default_cache(), self._chart_login
        )
        try:
            return fetcher.fetch(source, self.env.registry_hosts())
        except ChartFetchError as exc:
            raise StepFailed(f"cannot fetch the chart {source.describe()}: {exc}") from None

    def _chart_login(self, host: str) -> tuple[str | None, str | None]:
        """Registry credentials for `host` from `chart_pull_secret`, else the Harbor pull secret."""
        env = self.env
        name, namespace = env.chart_pull_secret, env.namespace
        if name is None:
            name, namespace = env.harbor.docker_secret, env.harbor.namespace or env.namespace
        return self._login(namespace, name, host)

    def _login(self, namespace: str, secret_name: str, host: str) -> tuple[str | None, str | None]:
        """(username, password) for `host` from a docker-config Secret; (None, None) when it has none."""
        try:
            secret = self.kube.secret(namespace, secret_name)
        except KubeError:
            return None, None
        creds = docker_config(secret or {}, host)
        return creds.username, creds.password

    def _cached_artifacts(self, digests: list[str]) -> dict[str, Artifact]:
        try:
            records = self.store.cached_images(digests)
        except Unavailable:
            return {}
        found = {d: artifact_from_record(data) for d, data in records.items()}
        return {d: a for d, a in found.items() if a is not None}

    def _cache_artifacts(self, artifacts: dict[str, Artifact]) -> None:
        with contextlib.suppress(Unavailable):
            self.store.cache_images({d: artifact_record(a) for d, a in artifacts.items()}, self.env.approval_ttl)

    def resolve_images(self, names: list[str]) -> list[Resolution]:
        """Each image's digest from the registries the environment gives access to (Harbor and
        `registries:`), each registry asked concurrently; others come back NOT_CHECKED. Input order."""
        reachable = sources(self.env)
        wanted = [parse(name) for name in names]
        groups: dict[str, list[Image]] = {}
        for image in wanted:
            if image.host in reachable:
                groups.setdefault(image.host, []).append(image)

        harbor_host = self.env.harbor.registry.lower()

        def ask(host: str) -> list[Resolution]:
            src = reachable[host]
            user, password = self._login(src.namespace, src.secret, host)
            results = resolve_images(src.url, groups[host], user, password, credential=src.secret)
            if host != harbor_host:
                return results
            # Harbor also says when each image was pushed, what its scan found and whether it is signed: asked
            # once per digest while the approval lives (the deploy reads what the approvers saw).
            digests = [r.digest for r in results if r.digest]
            cached = self._cached_artifacts(digests)
            wanted = [(r.image.repository, r.digest) for r in results if r.digest and r.digest not in cached]
            fresh = {digest: art for (_repo, digest), art in harbor_artifacts(src.url, wanted, user, password).items()}
            self._cache_artifacts(fresh)
            known = {**cached, **fresh}
            return [replace(r, artifact=known.get(r.digest or "")) for r in results]

        found: dict[Image, Resolution] = {}
        if groups:
            with ThreadPoolExecutor(max_workers=len(groups)) as pool:
                for results in pool.map(ask, list(groups)):
                    found.update({r.image: r for r in results})
        return [found.get(i) or Resolution(i, Outcome.NOT_CHECKED) for i in wanted]

    def learn_secrets(self) -> None:
        """Before the job reports anything read from the cluster or helm: the environment's Secret values
        into the redaction registry (the first use of `kube` lists them). A cluster that cannot be reached
        is not this step's failure: the step that needs it reports it."""
        with contextlib.suppress(KubeError):
            self.kube  # noqa: B018 - the property does the work

    @cached_property
    def audit(self) -> Auditor:
        return Auditor(self.store, self.slack, self.config.audit_channel, self.clock)

    @property
    def release_selector(self) -> str:
        return f"app.kubernetes.io/instance={self.env.release}"

    @property
    def app_selector(self) -> str | None:
        """What a read about the app looks at: its release's objects where the environment has several
        apps, the whole namespace where it has one (as before apps existed)."""
        return self.release_selector if len(self.env.apps) > 1 else None

    @contextmanager
    def step(self, key: str) -> Iterator[StepNote]:
        """Run one checklist step: running -> done, or failed with the reason, which is re-raised."""
        note = StepNote()
        self.report.start(key)
        try:
            yield note
        except StepFailed as exc:
            self.report.fail(key, exc.message)
            raise
        except BaseException:
            self.report.fail(key, "stopped")
            raise
        self.report.done(key, note.text)
