"""Charts from where teams keep them: the real CNCF Distribution registry (OCI artifacts, Basic and Bearer
auth), a Helm repository on loopback, a bare git repository; and deploys from them end to end."""

from __future__ import annotations

import ipaddress
import socket
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.charts import ChartPolicy, chart_source
from config.environments import load_config
from sandbox.harbor import pull_secret
from sandbox.helm import recorded_argv
from tests.conftest import ROOT, Service, plate_config
from tests.integration import distribution
from tests.integration.chart_sources import (
    chart_archive,
    git,
    git_repository,
    helm_repository,
    provenance,
    push_chart,
)
from workers.charts import ChartFetcher, safe_unpack
from workers.registry import ChartFetchError

CHART = ROOT / "examples" / "plate-web"
REPO = "charts/plate-web"
VERSION = "1.4.0"


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[distribution.Registries]:
    with distribution.running(tmp_path_factory.mktemp("chart-registry")) as regs:
        push_chart(regs.basic.url, distribution.ADMIN, REPO, VERSION, chart_archive(CHART))
        yield regs


def policy_for(*hosts: str, **more: Any) -> ChartPolicy:
    return ChartPolicy(allowed_hosts=list(hosts), plain_http_hosts=list(hosts), **more)


def login(user: str, password: str) -> Any:
    return lambda _host: (user, password)


def oci(host: str, version: str = VERSION, repo: str = REPO) -> Any:
    return chart_source(f"oci://{host}/{repo}", version, None, None, None, None)


# --- OCI ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["basic", "token"])
def test_oci_chart_is_pulled_verified_and_cached(registries, tmp_path, which) -> None:
    reg = getattr(registries, which)
    fetcher = ChartFetcher(policy_for(reg.host), tmp_path / "cache", login(*distribution.PULLER))
    got = fetcher.fetch(oci(reg.host))
    assert (got.path / "Chart.yaml").is_file() and yaml.safe_load((got.path / "Chart.yaml").read_text())[
        "version"
    ] == VERSION
    assert got.pin and got.pin.startswith("sha256:") and got.path.is_relative_to(tmp_path / "cache")
    assert f"oci://{reg.host}/{REPO}:{VERSION} @ {got.pin[:19]}…" == got.describe()
    again = fetcher.fetch(oci(reg.host))
    assert (again.path, again.pin) == (got.path, got.pin)


def test_oci_failures_name_the_cause_without_the_password(registries, tmp_path) -> None:
    host = registries.basic.host
    fetcher = ChartFetcher(policy_for(host), tmp_path, login(distribution.PULLER[0], "wrong-Pa55word"))
    with pytest.raises(ChartFetchError) as bad_login:
        fetcher.fetch(oci(host))
    assert "credentials rejected" in str(bad_login.value) and "wrong-Pa55word" not in str(bad_login.value)
    fetcher = ChartFetcher(policy_for(host), tmp_path, login(*distribution.PULLER))
    with pytest.raises(ChartFetchError, match=r"chart version 9\.9\.9 not found"):
        fetcher.fetch(oci(host, "9.9.9"))
    with pytest.raises(ChartFetchError, match=r"not in charts\.allowed_hosts"):
        ChartFetcher(ChartPolicy(), tmp_path, login(*distribution.PULLER)).fetch(oci(host))
    # An image is not a chart.
    with pytest.raises(ChartFetchError, match="is not a Helm chart artifact"):
        fetcher.fetch(oci(host, distribution.TAG, distribution.REPO))


def test_oci_provenance_is_checked_when_pushed(registries, tmp_path) -> None:
    reg = registries.basic
    archive = chart_archive(CHART, edit={"values.yaml": "replicaCount: 2\n"})
    push_chart(
        reg.url, distribution.ADMIN, "charts/signed", VERSION, archive, provenance(archive, f"plate-web-{VERSION}.tgz")
    )
    forged = "sha256:" + "0" * 64
    push_chart(
        reg.url, distribution.ADMIN, "charts/forged", VERSION, archive, provenance(archive, "x.tgz", digest=forged)
    )
    fetcher = ChartFetcher(policy_for(reg.host), tmp_path, login(*distribution.PULLER))
    assert fetcher.fetch(oci(reg.host, repo="charts/signed")).provenance == "provenance checksum matches"
    with pytest.raises(ChartFetchError, match="does not match the checksum in its provenance file"):
        fetcher.fetch(oci(reg.host, repo="charts/forged"))


# --- Helm repository ---------------------------------------------------------------------------------------


def repo_source(url: str, version: str = VERSION) -> Any:
    return chart_source("plate-web", version, url, None, None, None)


def test_helm_repository_chart_is_checked_against_the_index_digest(tmp_path) -> None:
    archive = chart_archive(CHART)
    with helm_repository(tmp_path / "repo", {f"plate-web-{VERSION}.tgz": archive}) as url:
        host = url.split("://")[1]
        fetcher = ChartFetcher(policy_for(host), tmp_path / "cache")
        got = fetcher.fetch(repo_source(url))
        assert (
            (got.path / "templates").is_dir()
            and got.pin
            and got.describe().startswith(f"plate-web {VERSION} from {url}")
        )
        with pytest.raises(ChartFetchError, match=r"plate-web 9\.9\.9 not in .* \(newest: 1\.4\.0\)"):
            fetcher.fetch(repo_source(url, "9.9.9"))
        # The archive replaced behind the index's back.
        (tmp_path / "repo" / f"plate-web-{VERSION}.tgz").write_bytes(
            chart_archive(CHART, edit={"values.yaml": "x: 1\n"})
        )
        with pytest.raises(ChartFetchError, match="does not match the index's digest"):
            ChartFetcher(policy_for(host), tmp_path / "cache2").fetch(repo_source(url))


def test_helm_repository_index_pointing_elsewhere_is_refused(tmp_path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    with helm_repository(root, {f"plate-web-{VERSION}.tgz": chart_archive(CHART)}) as url:
        index = yaml.safe_load((root / "index.yaml").read_text())
        index["entries"]["plate-web"][0]["urls"] = ["https://evil.example.net/plate-web-1.4.0.tgz"]
        (root / "index.yaml").write_text(yaml.safe_dump(index))
        fetcher = ChartFetcher(policy_for(url.split("://")[1]), tmp_path / "cache")
        with pytest.raises(ChartFetchError, match=r"points outside the allowed hosts: evil\.example\.net"):
            fetcher.fetch(repo_source(url))


# --- git ---------------------------------------------------------------------------------------------------


def git_source(bare: Path, ref: str | None = "main", path: str | None = "charts/plate-web") -> Any:
    return chart_source("", None, None, f"file://{bare}", ref, path)


def test_git_chart_is_checked_out_at_the_commit_the_ref_names(tmp_path) -> None:
    bare, work = git_repository(tmp_path, CHART)
    fetcher = ChartFetcher(ChartPolicy(allow_file_urls=True), tmp_path / "cache")
    first = fetcher.fetch(git_source(bare))
    tagged = fetcher.fetch(git_source(bare, "v1"))
    assert first.pin == tagged.pin == git(work, "rev-parse", "HEAD") and (first.path / "Chart.yaml").is_file()
    assert not (first.path.parent.parent / ".git").exists()
    (work / "charts/plate-web/values.yaml").write_text("replicaCount: 3\n")
    git(work, "commit", "-q", "-am", "more replicas")
    git(work, "push", "-q", str(bare), "main")
    moved = fetcher.fetch(git_source(bare))
    assert moved.pin == git(work, "rev-parse", "HEAD") != first.pin
    assert "replicaCount: 3" in (moved.path / "values.yaml").read_text()
    with pytest.raises(ChartFetchError, match="`nope` is not a branch, tag or commit"):
        fetcher.fetch(git_source(bare, "nope"))
    with pytest.raises(ChartFetchError, match=r"no chart \(Chart.yaml\) at `charts`"):
        fetcher.fetch(git_source(bare, path="charts"))


def test_git_file_urls_and_private_hosts_are_refused_unless_configured(tmp_path) -> None:
    bare, _ = git_repository(tmp_path, CHART)
    with pytest.raises(ChartFetchError, match="file:// chart sources are not allowed"):
        ChartFetcher(ChartPolicy(), tmp_path / "c").fetch(git_source(bare))
    private = chart_source("", None, None, "https://10.0.0.7/platform/charts.git", "main", None)
    with pytest.raises(ChartFetchError, match="a private address"):
        ChartFetcher(ChartPolicy(allowed_hosts=["10.0.0.7"]), tmp_path / "c").fetch(private)
    # A name, not an address, that resolves to one (this machine's own name, from /etc/hosts).
    name = socket.gethostname().lower()
    if not any(not ipaddress.ip_address(i[4][0]).is_global for i in socket.getaddrinfo(name, 443)):
        pytest.skip(f"{name} resolves to a public address here")
    by_name = chart_source("", None, None, f"https://{name}/charts.git", "main", None)
    with pytest.raises(ChartFetchError, match="resolves to a private address"):
        ChartFetcher(ChartPolicy(allowed_hosts=[name]), tmp_path / "c").fetch(by_name)


def test_git_symlink_out_of_the_repository_is_refused(tmp_path) -> None:
    bare, work = git_repository(tmp_path, CHART)
    (work / "charts/plate-web/templates/leak.yaml").symlink_to("/etc/passwd")
    git(work, "add", ".")
    git(work, "commit", "-q", "-m", "leak")
    git(work, "push", "-q", str(bare), "main")
    with pytest.raises(ChartFetchError, match="links outside the repository"):
        ChartFetcher(ChartPolicy(allow_file_urls=True), tmp_path / "cache").fetch(git_source(bare))


# --- archives ------------------------------------------------------------------------------------------------


def _member(name: str, kind: bytes = tarfile.REGTYPE, size: int = 1, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size if kind == tarfile.REGTYPE else 0, link
    return info


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (_member("plate-web/../../evil.sh"), "escapes its directory"),
        (_member("/etc/cron.d/evil"), "escapes its directory"),
        (_member("plate-web/templates/link.yaml", tarfile.SYMTYPE, link="/etc/passwd"), "is a link"),
        (_member("plate-web/templates/hard.yaml", tarfile.LNKTYPE, link="plate-web/Chart.yaml"), "is a link"),
        (_member("plate-web/dev", tarfile.CHRTYPE), "special file"),
        (_member("other/Chart.yaml"), "one chart directory"),
    ],
    ids=["dot-dot", "absolute", "symlink", "hardlink", "device", "two-tops"],
)
def test_hostile_archives_are_refused(tmp_path, member, message) -> None:
    with pytest.raises(ChartFetchError, match=message):
        safe_unpack(chart_archive(CHART, extra=[member]), tmp_path / "out")
    assert not (tmp_path / "evil.sh").exists()


# --- end to end: deploys from a registry and from git ---------------------------------------------------------


def configure(service: Service, plate_env: dict[str, Any], charts: dict[str, Any], env: str, source: Any) -> None:
    config = plate_config()
    config["environments"][env].pop("chart")
    config["environments"][env].update(source)
    config["charts"] = charts
    Path(plate_env["config_path"]).write_text(yaml.safe_dump(config))
    service.runtime.listeners.services.config = load_config(plate_env["config_path"])


def run_prod(service: Service, approve: Any = None, tag: str = "1.5.0") -> Any:
    known = set(service.request_ids())
    service.command(f"deploy prod {tag}")
    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()  # plan
    [new] = set(service.request_ids()) - known
    request = service.runtime.store.get(new)
    if approve is not None:
        approve(request)
    service.click("plate_approve", request.id, user="U0ALICE")
    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()  # deploy
    return request


def card_text(service: Service, which: int = 0) -> str:
    cards = [m for m in service.slack.messages("C0DEPLOYS") if not m.thread_ts or m.thread_ts == m.ts]
    return service.slack.render_thread("C0DEPLOYS", cards[which].ts)


@pytest.mark.slow
def test_prod_deploy_from_the_registry_binds_the_approval_to_the_chart_digest(
    service, cluster, kube_api, plate_env, helm_state, registries, tmp_path, monkeypatch
) -> None:
    reg = registries.basic
    monkeypatch.setenv("PLATE_CHART_CACHE", str(tmp_path / "chart-cache"))
    digest = push_chart(reg.url, distribution.ADMIN, "e2e/plate-web", VERSION, chart_archive(CHART))
    kube_api.put(pull_secret("plate-prod", reg.host, *distribution.PULLER))
    source = {"chart": f"oci://{reg.host}/e2e/plate-web", "version": VERSION}
    configure(service, plate_env, {"allowed_hosts": [reg.host], "plain_http_hosts": [reg.host]}, "prod", source)
    run_prod(service)
    text = card_text(service)
    assert f"Chart source: `oci://{reg.host}/e2e/plate-web:{VERSION} @ {digest[:19]}…`" in text, text
    assert "deploy prod* — succeeded" in text
    [upgrade] = [a for a in recorded_argv(helm_state) if a[0] == "upgrade"]
    assert Path(upgrade[3]).is_relative_to(tmp_path / "chart-cache") and upgrade[2] == "plate-web"
    assert service.runtime.store.lock_holder("prod") is None

    # The same tag re-pushed between the plan and the approval: the deploy refuses.
    changed = chart_archive(CHART, edit={"values.yaml": (CHART / "values.yaml").read_text() + "\nextra: 1\n"})

    def repush(_request: Any) -> None:
        push_chart(reg.url, distribution.ADMIN, "e2e/plate-web", VERSION, changed)

    before = len([a for a in recorded_argv(helm_state) if a[0] == "upgrade"])
    run_prod(service, approve=repush, tag="1.6.0")
    assert len([a for a in recorded_argv(helm_state) if a[0] == "upgrade"]) == before
    assert "the change approved is no longer what would be deployed" in card_text(service, -1)


@pytest.mark.slow
def test_stg_deploy_from_a_git_repository(service, cluster, plate_env, helm_state, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PLATE_CHART_CACHE", str(tmp_path / "chart-cache"))
    bare, work = git_repository(tmp_path, CHART)
    source = {"git": f"file://{bare}", "ref": "v1", "path": "charts/plate-web"}
    configure(service, plate_env, {"allow_file_urls": True}, "stg", source)
    service.command("deploy stg 1.5.0")
    service.wait(lambda: service.runtime.queue.count == 1)
    service.run_worker()
    [upgrade] = [a for a in recorded_argv(helm_state) if a[0] == "upgrade"]
    commit = git(work, "rev-parse", "HEAD")
    assert Path(upgrade[3]) == tmp_path / "chart-cache" / "git" / commit / "charts" / "plate-web"
    threads = card_text(service)
    assert f"Chart source: `file://{bare}/charts/plate-web @ v1 @ commit {commit[:12]}`" in threads, threads
