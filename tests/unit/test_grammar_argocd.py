"""`/plate argocd <app>`: the application names the environment (the one whose `argocd_app` it is)."""

from __future__ import annotations

import pytest

from bot.grammar import USAGE, Command, Verb, help_text, parse
from core.errors import UsageError

APPS = {"plate-web-prod": ("prod", "plate-web"), "plate-web-stg": ("stg", "plate-web")}


def resolve_env(name: str) -> str | None:
    return name.lower() if name.lower() in ("stg", "prod") else None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("argocd plate-web-prod", Command(Verb.ARGOCD, "prod", argocd_app="plate-web-prod", app="plate-web")),
        ("ARGOCD plate-web-stg", Command(Verb.ARGOCD, "stg", argocd_app="plate-web-stg", app="plate-web")),
    ],
)
def test_argocd_resolves_the_environment_from_the_app(text: str, expected: Command) -> None:
    command = parse(text, resolve_env, APPS.get)
    assert command == expected
    assert command.args() == {"argocd_app": expected.argocd_app}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("argocd", f"Which Argo CD application? Usage: `{USAGE[Verb.ARGOCD]}`"),
        ("argocd a b", f"Too many arguments. Usage: `{USAGE[Verb.ARGOCD]}`"),
        ("argocd Plate_Web", "`PlateWeb` is not an Argo CD application name (lowercase letters, digits, `-`)."),
        ("argocd prod", "No environment here is deployed by the Argo CD application `prod`."),
        ("argocd plate-web-prod --dry-run", "`--dry-run` does not apply to `argocd`; it changes nothing anyway."),
        ("argocd <!here>", "`!here` is not an Argo CD application name (lowercase letters, digits, `-`)."),
    ],
)
def test_argocd_refusals(text: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse(text, resolve_env, APPS.get)
    assert info.value.message == message


def test_without_an_app_resolver_no_app_is_known() -> None:
    with pytest.raises(UsageError, match="No environment here is deployed"):
        parse("argocd plate-web-prod", resolve_env)


def test_argocd_is_read_only_and_in_the_help() -> None:
    assert not Verb.ARGOCD.mutating
    assert "`/plate argocd <argocd-app>`" in help_text(["stg", "prod"])
