"""PURE. `/plate <verb> <env> [args] [--dry-run]` -> Command, or UsageError saying what was wrong.

Every value a user types is checked against a strict pattern here, before anything else sees it:
these strings end up in helm argv and Kubernetes API paths.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from core.errors import UsageError
from core.requests import Verb

MAX_TEXT = 300
IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
REVISION = re.compile(r"^[1-9][0-9]{0,6}$")
# A pod or workload, optionally with its kind: `web-7d9f`, `deployment/web`, `sts/db`.
OBJECT_REF = re.compile(r"^(?:(deployment|deploy|statefulset|sts|job|pod|po)/)?([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)$")
ARGOCD_APP = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


VERB_ALIASES = {"verify-harbor": Verb.HARBOR_VERIFY}
DRY_RUN_VERBS = (Verb.DEPLOY, Verb.ROLLBACK)

USAGE = {
    Verb.DEPLOY: "/plate deploy <env> [app] [image-tag] [--dry-run]",
    Verb.ROLLBACK: "/plate rollback <env> [app] [revision] [--dry-run]",
    Verb.HARBOR_VERIFY: "/plate harbor-verify <env>",
    Verb.HARBOR_BOOTSTRAP: "/plate harbor-bootstrap <env>",
    Verb.STATUS: "/plate status <env> [app]",
    Verb.HISTORY: "/plate history <env> [app] [count]",
    Verb.DIAGNOSE: "/plate diagnose <env> [app|pod-or-workload]",
    Verb.ARGOCD: "/plate argocd <argocd-app>",
    Verb.APPS: "/plate apps [env]",
    Verb.HELP: "/plate help",
}

# An environment's apps and its default app (None: a command must name one when there are several).
AppsOf = Callable[[str], tuple[list[str], str | None]]


@dataclass(frozen=True)
class Command:
    verb: Verb
    env: str | None = None
    image_tag: str | None = None
    revision: int | None = None
    target: str | None = None
    count: int | None = None
    argocd_app: str | None = None
    app: str | None = None  # the environment's app (Helm release) the verb is about
    dry_run: bool = False

    def args(self) -> dict[str, object]:
        """The verb's arguments, without the defaults: what the job needs beyond the environment and app."""
        out: dict[str, object] = {}
        for key in ("image_tag", "revision", "target", "count", "argocd_app"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.dry_run:
            out["dry_run"] = True
        return out


def _shown(value: str, limit: int = 40) -> str:
    """A user's token echoed back safely: bounded, without Slack markup characters."""
    cleaned = re.sub(r"[`*_~<>&]", "", value)
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + "…"


def environment(word: str, resolve_env: Callable[[str], str | None]) -> str:
    """The environment a word names (a name or an alias), or UsageError."""
    env = resolve_env(word)
    if env is None:
        raise UsageError(f"There is no environment called `{_shown(word)}`.")
    return env


def parse(
    text: str,
    resolve_env: Callable[[str], str | None],
    resolve_argocd: Callable[[str], tuple[str, str | None] | None] | None = None,
    apps_of: AppsOf | None = None,
) -> Command:
    """Parse the text after `/plate`. `resolve_env` maps a name or alias to the canonical name;
    `resolve_argocd` maps an Argo CD application name to the environment (and app) it deploys; `apps_of`
    names an environment's apps and its default (without it, commands name no app)."""
    if len(text) > MAX_TEXT:
        raise UsageError(f"That command is {len(text)} characters long; the limit is {MAX_TEXT}.")
    words = text.split()
    flags = [w for w in words if w.startswith("-")]
    words = [w for w in words if not w.startswith("-")]
    if not words:
        raise UsageError("Tell me what to do: a verb such as `deploy`, `status` or `help`.")
    verb_word = words[0].lower()
    try:
        verb = VERB_ALIASES.get(verb_word) or Verb(verb_word)
    except ValueError:
        raise UsageError(f"I don't know the command `{_shown(words[0])}`.") from None
    if verb is Verb.HELP:
        if len(words) > 1 or flags:
            raise UsageError("`help` takes no arguments.")
        return Command(Verb.HELP)

    dry_run = False
    for flag in flags:
        if flag == "--dry-run" and verb in DRY_RUN_VERBS:
            dry_run = True
        elif flag == "--dry-run":
            raise UsageError(f"`--dry-run` does not apply to `{verb}`; it changes nothing anyway.")
        else:
            raise UsageError(f"Unknown option `{_shown(flag)}`. Usage: `{USAGE[verb]}`")
    if flags.count("--dry-run") > 1:
        raise UsageError("`--dry-run` is given twice.")

    if verb is Verb.ARGOCD:
        return _argocd(words[1:], resolve_argocd)
    if verb is Verb.APPS:
        if len(words) > 2:
            raise UsageError(f"Too many arguments. Usage: `{USAGE[verb]}`")
        return Command(verb, environment(words[1], resolve_env) if len(words) == 2 else None)
    if len(words) < 2:
        raise UsageError(f"Which environment? Usage: `{USAGE[verb]}`")
    env = environment(words[1], resolve_env)
    rest = words[2:]
    app = None
    if verb.per_app and apps_of is not None:
        apps, default = apps_of(env)
        named = rest.pop(0) if rest and rest[0] in apps else None
        app = choose_app(verb, env, named, apps, default)
    if len(rest) > 1:
        raise UsageError(f"Too many arguments. Usage: `{USAGE[verb]}`")
    arg = rest[0] if rest else None
    return replace(_with_argument(verb, env, arg, dry_run), app=app)


def choose_app(verb: Verb, env: str, named: str | None, apps: list[str], default: str | None) -> str:
    """The app of `env` a command is about: the one it names, else the default (or the only one);
    UsageError if it names none the environment has, or names none where there are several."""
    if named is not None:
        if named not in apps:
            raise UsageError(f"`{env}` has no app called `{_shown(named)}`. Usage: `{USAGE[verb]}`")
        return named
    if default is not None or len(apps) == 1:
        return default or apps[0]
    listed = ", ".join(f"`{a}`" for a in apps)
    raise UsageError(f"Which app of `{env}`? It has {listed}. Usage: `{USAGE[verb]}`")


def _argocd(words: list[str], resolve_argocd: Callable[[str], tuple[str, str | None] | None] | None) -> Command:
    """`argocd <argocd-app>`: the application names its environment and app (the one whose `argocd_app` it is)."""
    usage = USAGE[Verb.ARGOCD]
    if not words:
        raise UsageError(f"Which Argo CD application? Usage: `{usage}`")
    if len(words) > 1:
        raise UsageError(f"Too many arguments. Usage: `{usage}`")
    name = words[0]
    if not ARGOCD_APP.match(name):
        raise UsageError(f"`{_shown(name)}` is not an Argo CD application name (lowercase letters, digits, `-`).")
    found = resolve_argocd(name) if resolve_argocd is not None else None
    if found is None:
        raise UsageError(f"No environment here is deployed by the Argo CD application `{_shown(name)}`.")
    return Command(Verb.ARGOCD, found[0], argocd_app=name, app=found[1])


def _with_argument(verb: Verb, env: str, arg: str | None, dry_run: bool) -> Command:
    if arg is None:
        return Command(verb, env, dry_run=dry_run)
    if verb is Verb.DEPLOY:
        if not IMAGE_TAG.match(arg):
            raise UsageError(f"`{_shown(arg)}` is not a valid image tag (letters, digits, `_`, `.`, `-`; at most 128).")
        return Command(verb, env, image_tag=arg, dry_run=dry_run)
    if verb is Verb.ROLLBACK:
        if not REVISION.match(arg):
            raise UsageError(f"`{_shown(arg)}` is not a revision number. Usage: `{USAGE[verb]}`")
        return Command(verb, env, revision=int(arg), dry_run=dry_run)
    if verb is Verb.HISTORY:
        if not REVISION.match(arg) or not 1 <= int(arg) <= 50:
            raise UsageError("The count for `history` is a number from 1 to 50.")
        return Command(verb, env, count=int(arg))
    if verb is Verb.DIAGNOSE:
        match = OBJECT_REF.match(arg)
        if not match:
            raise UsageError(f"`{_shown(arg)}` is not a pod or workload name (e.g. `web-7d9f` or `deploy/web`).")
        return Command(verb, env, target=arg)
    raise UsageError(f"`{verb}` takes no further arguments. Usage: `{USAGE[verb]}`")


def help_text(env_names: list[str], apps: dict[str, list[str]] | None = None) -> str:
    """The command list and, per environment, its apps (when it has more than one)."""
    lines = ["*plate-bot commands*"]
    lines += [f"• `{usage}`" for usage in USAGE.values()]
    lines.append(f"Environments: {', '.join(f'`{n}`' for n in env_names)}")
    for env, names in (apps or {}).items():
        if len(names) > 1:
            lines.append(f"Apps of `{env}`: {', '.join(f'`{a}`' for a in names)}")
    lines.append("Changes to environments that need approval wait for a second person to click Approve.")
    return "\n".join(lines)
