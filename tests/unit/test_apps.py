"""Several apps per environment, without I/O beyond fakeredis: the environments file's rules, each app's
view of its environment, and locks per release that the whole environment blocks both ways."""

from __future__ import annotations

import re
from typing import Any

import fakeredis
import pytest

from bot.grammar import Command, Verb, choose_app, parse
from config.environments import ConfigError, parse_config
from core.errors import UsageError
from core.requests import new_request
from core.store import LockHeld, Store


def env(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "namespace": "plate-prod",
        "approvals_required": 1,
        "approvers": ["U0ALICE"],
        "apps": {
            "plate-web": {"chart": "web", "argocd_app": "plate-web-prod"},
            "plate-api": {"chart": "api", "namespace": "api", "release": "api", "approvals_required": 2,
                          "approvers": ["U0ALICE", "S0SRE"], "readers": ["S0SRE"], "helm_timeout": "1m"},
        },
    }  # fmt: skip
    return base | changes


def config(**changes: Any) -> Any:
    return parse_config({"environments": {"prod": env(**changes)}})


def test_an_app_sees_its_own_release_and_overrides_and_the_environment_for_the_rest() -> None:
    prod = config(default_app="plate-web", channels=["C0DEPLOYS"]).environments["prod"]
    api = prod.for_app("plate-api")
    assert (api.app, api.release, api.namespace, api.approvals_required, api.helm_timeout) == (
        "plate-api", "api", "api", 2, 60,
    )  # fmt: skip
    assert api.readers == ["S0SRE"] and api.channels == ["C0DEPLOYS"] and api.argocd_app is None
    web = prod.for_app()  # the default app
    assert (web.app, web.release, web.namespace, web.argocd_app) == (
        "plate-web",
        "plate-web",
        "plate-prod",
        "plate-web-prod",
    )
    assert web.key == "prod/plate-prod/plate-web" and api.key == "prod/api/api" and prod.key == "prod"
    assert web.label == "prod/plate-web" and prod.label == "prod"
    assert web.lock_blockers() == ["prod"] and prod.lock_blockers() == [web.key, api.key]
    with pytest.raises(KeyError):
        prod.for_app("nope")


def test_the_old_layout_is_one_app_keyed_by_the_environments_name() -> None:
    old = parse_config({"environments": {"stg": {"namespace": "plate-stg", "release": "plate-web", "chart": "c",
                                                 "argocd_app": "plate-web-stg"}}}).environments["stg"]  # fmt: skip
    assert old.app_names() == ["plate-web"] and old.default_app == "plate-web"
    app = old.for_app()
    assert (app.release, app.key, app.label, app.argocd_app) == ("plate-web", "stg", "stg", "plate-web-stg")
    assert app.lock_blockers() == [] and old.lock_blockers() == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"release": "plate-web", "chart": "c"}, "either `apps:` or release/chart/values"),
        ({"apps": {}}, "needs `apps:`, or `release` and `chart`"),
        ({"default_app": "nope"}, "default_app 'nope' is not one of the apps"),
        ({"apps": {"a": {"chart": "x", "release": "web"}, "b": {"chart": "y", "release": "web"}}}, "same release"),
        ({"apps": {"a": {"chart": "x", "approvals_required": 1, "approvers": []}}}, "app a: approvals_required > 0"),
        ({"apps": {"Bad_Name": {"chart": "x"}}}, "environments.prod.apps.Bad_Name"),
    ],
)
def test_bad_apps_are_refused_with_one_line(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        parse_config({"environments": {"prod": env(**changes) | ({"approvers": ["U0A1"]})}}, "plate.yaml")


def request(rid: str, lock: str, verb: str = "deploy") -> Any:
    return new_request(rid, verb=verb, env="prod", requester="U0BOB", channel="C1", now=0.0, ttl=900,
                       approvals_required=0, lock=lock)  # fmt: skip


def test_locks_per_release_and_the_whole_environment_block_each_other() -> None:
    store = Store(fakeredis.FakeRedis())
    prod = config().environments["prod"]
    web, api = prod.for_app("plate-web"), prod.for_app("plate-api")
    # Two apps at once: neither waits for the other.
    assert store.create(request("w1", web.key), lock_env=web.key, take_lock=True, blockers=web.lock_blockers()) is None
    assert store.create(request("a1", api.key), lock_env=api.key, take_lock=True, blockers=api.lock_blockers()) is None
    # The same app again: busy, named by who holds it.
    held = store.create(request("w2", web.key), lock_env=web.key, take_lock=True, blockers=web.lock_blockers())
    assert held is not None and held["request"] == "w1"
    # harbor-bootstrap locks the whole environment: busy while any app is held ...
    boot = request("b1", "prod", "harbor-bootstrap")
    assert store.create(boot, lock_env="prod", take_lock=True, blockers=prod.lock_blockers())["request"] in ("w1", "a1")
    assert store.lock_holder("prod") is None  # its claim was given back
    store.release_lock(web.key, "w1")
    store.release_lock(api.key, "a1")
    boot2 = request("b2", "prod", "harbor-bootstrap")
    assert store.create(boot2, lock_env="prod", take_lock=True, blockers=prod.lock_blockers()) is None
    # ... and while it runs no app may start, neither at creation nor at approval.
    busy = store.create(request("w3", web.key), lock_env=web.key, take_lock=True, blockers=web.lock_blockers())
    assert busy is not None and busy["request"] == "b2" and store.lock_holder(web.key) is None
    assert store.create(request("a2", api.key), lock_env=api.key, blockers=api.lock_blockers()) is not None
    store.release_lock("prod", "b2")
    assert store.create(request("a3", api.key), lock_env=api.key, blockers=api.lock_blockers()) is None
    store.create(request("b3", "prod", "harbor-bootstrap"), lock_env="prod", take_lock=True)
    with pytest.raises(LockHeld):  # a pending request approved while the environment is held
        store.transition("a3", lambda r: r.queued_now(1.0), lock_env=api.key, lock_ttl=60, blockers=api.lock_blockers())


def test_home_names_the_app_of_each_pending_request_and_operation() -> None:
    from core.home import home_view, operation_entry, release_keys

    prod = config(default_app="plate-web").environments["prod"]
    pending = request("p1", "prod/api/api").evolve(app="plate-api", approvals_required=2)
    op = operation_entry(pending, outcome="succeeded", summary="revision 3 deployed", ended_at=10.0, link=None)
    keys = release_keys([prod])
    snapshot = {"releases": dict.fromkeys(keys), "locks": dict.fromkeys(keys), "operations": {"prod": [op]},
                "pending": [pending]}  # fmt: skip
    view = home_view([prod], snapshot, viewer="U0ALICE", approver_of={"prod/plate-api"}, now=20.0)
    texts = [str(b.get("text", {}).get("text", "")) for b in view["blocks"]]
    assert any(t.startswith(":raised_hand: *deploy* `plate-api`") for t in texts), texts
    assert any("*deploy* `plate-api` by <@U0BOB>" in t for t in texts), texts


def apps_of(default: str | None) -> Any:
    return lambda env: (["plate-web", "plate-api"], default)


def env_named(word: str) -> str | None:
    return word if word in ("stg", "prod") else None


@pytest.mark.parametrize(
    ("text", "default", "expected"),
    [
        ("deploy prod plate-api 1.5.0", None, Command(Verb.DEPLOY, "prod", image_tag="1.5.0", app="plate-api")),
        ("deploy prod 1.5.0", "plate-web", Command(Verb.DEPLOY, "prod", image_tag="1.5.0", app="plate-web")),
        ("rollback prod plate-api 3 --dry-run", None,
         Command(Verb.ROLLBACK, "prod", revision=3, app="plate-api", dry_run=True)),
        ("diagnose prod plate-api", None, Command(Verb.DIAGNOSE, "prod", app="plate-api")),
        ("diagnose prod web-7d9f", "plate-web", Command(Verb.DIAGNOSE, "prod", target="web-7d9f", app="plate-web")),
        ("history prod plate-web 5", None, Command(Verb.HISTORY, "prod", count=5, app="plate-web")),
        ("harbor-verify prod", None, Command(Verb.HARBOR_VERIFY, "prod")),
        ("apps", None, Command(Verb.APPS)),
        ("apps prod", None, Command(Verb.APPS, "prod")),
    ],
)  # fmt: skip
def test_the_word_after_the_environment_is_an_app_when_it_names_one(
    text: str, default: str | None, expected: Command
) -> None:
    assert parse(text, env_named, None, apps_of(default)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("deploy prod 1.5.0", "Which app of `prod`? It has `plate-web`, `plate-api`."),
        ("status prod", "Which app of `prod`? It has `plate-web`, `plate-api`."),
        ("deploy prod plate-api 1.5.0 extra", "Too many arguments."),
        ("apps prod stg", "Too many arguments."),
        ("apps moon", "There is no environment called `moon`."),
    ],
)
def test_commands_that_name_no_app_of_several_are_asked_which(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        parse(text, env_named, None, apps_of(None))


def test_a_named_app_must_be_one_of_the_environments() -> None:
    """The incident button's value names its app itself: a forged or removed one is refused by name."""
    assert choose_app(Verb.ROLLBACK, "prod", "plate-api", ["plate-web", "plate-api"], None) == "plate-api"
    with pytest.raises(UsageError, match="`prod` has no app called `evil`"):
        choose_app(Verb.ROLLBACK, "prod", "<evil>", ["plate-web", "plate-api"], "plate-web")
