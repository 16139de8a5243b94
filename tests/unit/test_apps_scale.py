"""Several apps per environment at scale (issue 14): 3 environments × 50 apps through App Home
(`home_view`) and `/plate apps` (`apps_reply`) stay within Block Kit's limits (blocks per view or
message, characters per text), and every app is either listed or counted in a "…and N more" line. A
one-app environment's Home is what it was before apps existed. The snapshot is built by hand in the
shape `HomeStore.home_snapshot` returns (bench/apps_scale.py measures the same on a real Redis)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from config.environments import Environment, PlateConfig, parse_config
from core.blocks import HOME_BLOCKS, MESSAGE_BLOCKS, SECTION_CHARS, Blocks, context, section, texts
from core.home import approvable, apps_reply, home_view, lock_line, operation_entry, release_keys, release_lines
from core.requests import Request, new_request

T0 = 1_700_000_000.0
APPROVER = "U0ALICE"
NAMESPACES = {
    "dev": ["plate-dev"],
    "stg": ["plate-stg", "plate-stg-jobs"],
    "prod": [f"plate-prod-{i}" for i in range(5)],
}
LONG = "a-fifty-three-character-application-name-for-helm-"  # + 2 digits: Helm's 53-character limit


def config(apps: int = 50, name: str = "svc-{:03d}") -> PlateConfig:
    environments: dict[str, Any] = {}
    for env, spread in NAMESPACES.items():
        entries: dict[str, Any] = {}
        for i in range(apps):
            entries[name.format(i)] = {"chart": "charts/web", "namespace": spread[i % len(spread)]}
        environments[env] = {
            "namespace": spread[0],
            "apps": entries,
            "approvals_required": 1 if env == "prod" else 0,
            "approvers": [APPROVER] if env == "prod" else [],
        }
    return parse_config({"environments": environments})


def record(i: int, tag: str) -> dict[str, Any]:
    status = "failed" if i % 13 == 5 else "pending-upgrade" if i % 17 == 3 else "deployed"
    return {
        "installed": i != 7, "revision": 3 + i, "status": status, "chart": "web-0.3.1", "app_version": "1.4.0",
        "image_tag": tag, "deployed_at": T0, "deployed_by": "U0BOB", "request": "r1", "seen_at": T0,
    }  # fmt: skip


def pending(rid: str, env: Environment, app: str) -> Request:
    view = env.for_app(app)
    return new_request(
        rid, verb="deploy", env=env.name, app=app, lock=view.key, requester="U0BOB", channel="C0DEPLOYS",
        now=T0, ttl=900, approvals_required=view.approvals_required, args={"image_tag": "1.5.0"},
    )  # fmt: skip


def snapshot(cfg: PlateConfig, tag: str = "1.4.{}") -> dict[str, Any]:
    """Every app recorded but one (never seen), locks on some apps and one whole environment, 7 pending
    prod requests (more than Home lists), 10 operations per environment."""
    envs = list(cfg.environments.values())
    releases: dict[str, Any] = {k: None for k in release_keys(envs)}
    locks: dict[str, Any] = dict.fromkeys(release_keys(envs))
    operations: dict[str, Any] = {}
    for env in envs:
        for i, app in enumerate(env.apps):
            key = env.for_app(app).key
            releases[key] = None if i == 11 else record(i, tag.format(i))
            if i % 10 == 1 and env.name != "dev":
                locks[key] = {"request": f"l{i}", "verb": "deploy", "user": "U0CAROL", "since": T0, "state": "running"}
        operations[env.name] = [
            operation_entry(
                pending(f"o{n}", env, next(iter(env.apps))),
                outcome="failed",
                summary="helm upgrade: " + "x" * 400,
                ended_at=T0,
                link=f"https://example.slack.com/archives/C0DEPLOYS/p{n}",
            )
            for n in range(10)
        ]
    locks["dev"] = {"request": "h1", "verb": "harbor-bootstrap", "user": "U0DAVE", "since": T0, "state": "running"}
    prod = cfg.environments["prod"]
    waiting = [pending(f"p{i}", prod, app) for i, app in enumerate(list(prod.apps)[2:9])]
    return {"releases": releases, "locks": locks, "operations": operations, "pending": waiting}


def listed_or_counted(blocks: Blocks, envs: list[Environment]) -> dict[str, tuple[list[str], int]]:
    """Per environment (grouped by its head section `*<env>* · N apps`): the apps listed, in order, and how
    many its "…and N more" lines count."""
    by_env: dict[str, list[str]] = {}
    current = None
    for text in texts(blocks):
        if head := re.match(r"^\*([a-z][a-z0-9-]*)\* · \d+ apps?", text):
            current = head[1]
        elif current is not None:
            by_env.setdefault(current, []).append(text)
    out = {}
    for env in envs:
        text = "\n".join(by_env.get(env.name, []))
        listed = re.findall(r"^`([a-z0-9-]+)` ", text, re.M)
        more = sum(int(n) for n in re.findall(rf"…and (\d+) more: `/plate apps {env.name}`", text))
        out[env.name] = (listed, more)
    return out


def assert_every_app_once(blocks: Blocks, envs: list[Environment], *, counted: bool) -> None:
    for env in envs:
        listed, more = listed_or_counted(blocks, envs)[env.name]
        assert listed == list(env.apps)[: len(listed)], env.name  # in the file's order, none twice
        assert len(listed) + more == len(env.apps), env.name
        assert counted or more == 0, env.name


def assert_texts_fit(blocks: Blocks) -> None:
    assert texts(blocks) and max(len(t) for t in texts(blocks)) <= SECTION_CHARS


CASES = {
    "3x50": (config(), "1.4.{}"),
    # Helm's longest release names and the longest image tags Docker allows: lines ~200 characters.
    "3x50 long names and tags": (config(name=LONG + "{:02d}"), "v{}-" + "t" * 120),
}


@pytest.mark.parametrize("case", CASES)
def test_home_within_limits_and_every_app_listed_or_counted(case: str) -> None:
    cfg, tag = CASES[case]
    envs = list(cfg.environments.values())
    views = [(e, e.for_app(a)) for e in envs for a in e.apps]
    approver_of = approvable(envs, views, APPROVER, {})
    assert "prod" in approver_of
    view = home_view(envs, snapshot(cfg, tag), viewer=APPROVER, approver_of=approver_of, now=T0)
    blocks = view["blocks"]
    assert len(blocks) <= HOME_BLOCKS
    assert_texts_fit(blocks)
    assert "No room for" not in str(texts(blocks))  # three environments all fit
    assert_every_app_once(blocks, envs, counted=True)
    rendered = "\n".join(texts(blocks))
    assert ":lock: Locked by `h1`: harbor-bootstrap requested by <@U0DAVE>" in rendered  # the whole of dev
    assert sum(b["type"] == "actions" for b in blocks) == 5 and "…and 2 more pending" in rendered


@pytest.mark.parametrize("case", CASES)
def test_apps_reply_within_limits_and_every_app_listed(case: str) -> None:
    cfg, tag = CASES[case]
    envs = list(cfg.environments.values())
    snap = snapshot(cfg, tag)
    for shown in (envs, [cfg.environments["prod"]]):
        text, blocks = apps_reply(shown, {"releases": snap["releases"], "locks": snap["locks"]})
        assert text == f"{50 * len(shown)} apps in {len(shown)} environment{'s' if len(shown) > 1 else ''}"
        assert len(blocks) <= MESSAGE_BLOCKS
        assert_texts_fit(blocks)
        assert_every_app_once(blocks, shown, counted=False)  # `/plate apps` lists them all, a section per 3,000


def test_apps_reply_keeps_room_for_the_hidden_line_when_full() -> None:
    envs: dict[str, Any] = {f"e{i:02d}": {"namespace": "ns", "release": "web", "chart": "c"} for i in range(23)}
    envs["big"] = {"namespace": "ns", "apps": {f"svc-{i:03d}-{'x' * 40}": {"chart": "c"} for i in range(60)}}
    envs["last"] = {"namespace": "ns", "release": "web", "chart": "c"}
    many = list(parse_config({"environments": envs}).environments.values())
    _text, blocks = apps_reply(many, {"releases": {}, "locks": {}}, hidden=2)
    assert len(blocks) <= MESSAGE_BLOCKS
    assert "No room for" in texts(blocks)[-2] and texts(blocks)[-1].startswith("2 environments not shown")


ONE_APP = {
    "old layout": {"namespace": "plate-stg", "release": "plate-web", "chart": "charts/plate-web"},
    "apps layout": {"namespace": "plate-stg", "apps": {"plate-web": {"chart": "charts/plate-web"}}},
}


@pytest.mark.parametrize("layout", ONE_APP)
def test_one_app_environment_home_as_before(layout: str) -> None:
    env = parse_config({"environments": {"stg": ONE_APP[layout]}}).environments["stg"]
    app = env.for_app()
    assert app.key == ("stg" if layout == "old layout" else "stg/plate-stg/plate-web")
    rec = record(0, "1.4.0") | {"revision": 3, "chart": "plate-web-1.4.0"}
    lock = {"request": "r9", "verb": "deploy", "user": "U0BOB", "since": T0, "state": "running"}
    snap = {"releases": {app.key: rec}, "locks": {app.key: lock}, "operations": {}, "pending": []}
    blocks = home_view([env], snap, viewer="U0EVE", approver_of=set(), now=T0)["blocks"]
    assert blocks[2:] == [
        {"type": "divider"},
        section("*stg* · release `plate-web` in `plate-stg`"),
        section(release_lines(rec, app)),
        context(lock_line(lock)),
    ]
    rendered = "\n".join(texts(blocks))
    assert "*revision 3* · `plate-web-1.4.0` · image `1.4.0` · deployed" in rendered and "by <@U0BOB>" in rendered
    assert ":lock: Locked by `r9`: deploy requested by <@U0BOB>, running since <!date^1700000000^" in rendered
    assert "apps" not in rendered  # no app list for one app
