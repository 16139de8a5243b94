"""The Bolt app: thin listeners that ack fast, call the pure core, and talk to Redis and Slack.

Acks never wait on Slack or Kubernetes: parse, check, one Redis round trip, ack. Posting happens after.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from slack_bolt import Ack, App, BoltResponse, Respond
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot import ingress
from bot.grammar import Command, Verb, choose_app, environment, help_text, parse
from config.environments import Environment, PlateConfig
from core import messages, policy
from core.audit import Auditor, Event, args_text
from core.errors import Conflict, NotAllowed, Unavailable, UsageError, UserError
from core.home import HomeTab, apps_reply, release_keys
from core.logs import bind
from core.metrics import METRICS
from core.queue import Queue, enqueue, enqueue_plan
from core.requests import PAUSE_AUTOSYNC, Request, Status, new_request, target_of
from core.slack import SlackError, SlackGateway
from core.store import LockHeld, Store

log = logging.getLogger("plate.bot")
security_log = logging.getLogger("plate.security")


@dataclass
class Services:
    config: PlateConfig
    store: Store
    slack: SlackGateway
    queue: Queue
    signing_secret: str
    clock: Callable[[], float] = field(default=time.time)
    # Listeners run here after their ack; `Runtime.shutdown` drains it before the process exits.
    listener_executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=16, thread_name_prefix="plate-listener")
    )


def request_id_for(team: str | None, trigger_id: str | None) -> str:
    """Stable per slash-command delivery, so a redelivered command maps to the same request."""
    if not trigger_id:
        return uuid.uuid4().hex[:12]
    return hashlib.sha256(f"{team}:{trigger_id}".encode()).hexdigest()[:12]


class Listeners:
    """The /plate command, the buttons and App Home, bound to their services."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.audit = Auditor(
            services.store, services.slack, services.config.audit_channel, lambda: self.services.clock()
        )
        self.home = HomeTab(lambda: self.services.config, services.store, services.slack, lambda: self.services.clock())

    # --- /plate -----------------------------------------------------------------------------------------
    def on_command(self, ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        started = time.perf_counter()
        user, channel = command.get("user_id", ""), command.get("channel_id", "")
        text = command.get("text") or ""
        # Slack sends a trigger_id with every command; without one, the response_url is as unique.
        delivery = command.get("trigger_id") or command.get("response_url")
        request_id = request_id_for(command.get("team_id"), delivery)
        with bind(request_id=request_id, user=user):
            if (reason := self._foreign(command)) is not None:
                ack(text=f":no_entry: {messages.foreign_workspace()}")
                self.audit.record(Event.REQUEST_REFUSED, verb="command", user=user, detail=f"from {reason}")
                outcome = ("unknown", "foreign")
            else:
                outcome = self._command(ack, respond, text, user, channel, request_id)
        METRICS.command(outcome[0], outcome[1], time.perf_counter() - started)

    def _command(
        self, ack: Ack, respond: Respond, text: str, user: str, channel: str, request_id: str
    ) -> tuple[str, str]:
        try:
            cmd = parse(text, self._env_name, self._argocd_target, self._apps_of)
        except UsageError as exc:
            ack(text=messages.usage_reply(exc.message, self._help()))
            return "invalid", "usage"
        if cmd.verb is Verb.HELP:
            ack(text=self._help())
            return cmd.verb.value, "help"
        if cmd.verb is Verb.APPS:
            return self._apps(ack, cmd, user, channel)

        def answer(text: str | None) -> None:
            ack(text=text) if text else ack()

        return self.submit(cmd, user, channel, request_id, answer, respond)

    def _help(self) -> str:
        config = self.services.config
        return help_text(config.names(), {e.name: e.app_names() for e in config.environments.values()})

    def _apps(self, ack: Ack, cmd: Command, user: str, channel: str) -> tuple[str, str]:
        """`/plate apps [env]`: answered at once from Redis (live revision, image, lock of each app), to the
        asker only. Environments where the asker is not a reader, or that take no commands in this
        channel, are left out and counted."""
        config = self.services.config
        envs = [config.environments[cmd.env]] if cmd.env else list(config.environments.values())
        shown: list[Environment] = []
        for env in envs:
            try:
                policy.check_request(env, Verb.APPS, user, channel, self._members(policy.audience(env, Verb.APPS)))
                shown.append(env)
            except NotAllowed as exc:
                if cmd.env:
                    ack(text=f":no_entry: {exc.message}")
                    self.audit.record(Event.REQUEST_REFUSED, env=env.name, verb="apps", user=user, detail=exc.message)
                    return cmd.verb.value, "refused"
        try:
            snapshot = self.services.store.releases_and_locks(release_keys(shown))
        except Unavailable:
            ack(text=messages.unavailable())
            return cmd.verb.value, "unavailable"
        text, blocks = apps_reply(shown, snapshot, hidden=len(envs) - len(shown))
        ack(text=text, blocks=blocks)
        return cmd.verb.value, "answered"

    def submit(
        self,
        cmd: Command,
        user: str,
        channel: str,
        request_id: str,
        answer: Callable[[str | None], None],
        respond: Respond,
        *,
        origin: str | None = None,
    ) -> tuple[str, str]:
        """A parsed request from `user` in `channel`: the policy, the request in Redis (with its lock when
        it goes straight to the queue), then the card. `answer` is called exactly once, before anything is
        posted, with the reply the user sees (None: nothing to say): a slash command's ack, or an
        ephemeral message for a button. Returns (verb, outcome) for the metrics."""
        whole = self.services.config.environments[str(cmd.env)]
        env = whole.for_app(cmd.app) if cmd.verb.per_app else whole
        try:
            policy.check_request(env, cmd.verb, user, channel, self._members(policy.audience(env, cmd.verb)))
            if cmd.verb.mutating:
                self._check_member(user, "request changes")
            frozen = None if cmd.dry_run else policy.freeze_note(env, cmd.verb, self.services.clock())
        except NotAllowed as exc:
            answer(f":no_entry: {exc.message}")
            self.audit.record(Event.REQUEST_REFUSED, env=env.label, verb=cmd.verb.value, user=user, detail=exc.message)
            return cmd.verb.value, "refused"
        request = self._new_request(cmd, env, user, channel, request_id, frozen)
        if origin:
            request = request.evolve(origin=origin)
        lock = request.lock_name
        try:
            # Straight to the queue: the lock is taken now, so busy is answered here, never on a posted card.
            straight = request.queues_at_once
            holder = self.services.store.create(
                request, lock_env=lock, take_lock=straight, blockers=env.lock_blockers()
            )
        except Conflict:
            answer(None)  # the same command delivered twice: the first delivery answers
            return cmd.verb.value, "duplicate"
        except Unavailable:
            answer(messages.unavailable())
            if lock and straight:
                # The writes may still run when Redis answers again (a frozen node executes what it was
                # sent): undo the lock claim and the request as soon as it does.
                self.services.listener_executor.submit(self._forget_later, lock, request.id)
            return cmd.verb.value, "unavailable"
        if holder is not None:
            # Answered for good: a replay of this signed delivery (Slack's 5-minute window) after the
            # lock frees must not run it (Store.create remembered the id).
            answer(messages.lock_held(env.label, holder))
            detail = f"{env.label} locked by request {holder.get('request')}"
            self.audit.record(Event.REQUEST_REFUSED, env=env.label, verb=cmd.verb.value, user=user, detail=detail)
            return cmd.verb.value, "locked"
        answer(None)
        self.audit.record(Event.REQUEST_CREATED, request=request, user=user, detail=args_text(request.args))
        log.info("request created", extra={"verb": cmd.verb.value, "env": env.label, "command_args": cmd.args()})
        self._post_card(request, env, respond)
        return cmd.verb.value, "accepted"

    def _forget_later(self, env: str, request_id: str, patience: float = 30.0) -> None:
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            try:
                self.services.store.forget(request_id, lock_env=env)
                return
            except Unavailable:
                time.sleep(0.5)
        log.warning("could not undo a request made while Redis was away", extra={"env": env})

    def _new_request(
        self, cmd: Command, env: Environment, user: str, channel: str, request_id: str, frozen: str | None = None
    ) -> Request:
        needed = policy.approvals_needed(env, cmd.verb, dry_run=cmd.dry_run, extra=1 if frozen else 0)
        locks = cmd.verb.mutating and not cmd.dry_run
        return new_request(
            request_id,
            verb=cmd.verb.value,
            env=env.name,
            # Named only where the environment has several apps: one-app requests read as they always did.
            app=env.app if len(env.apps) > 1 else "",
            # An old-style environment's lock is its name, which `Request.lock_name` assumes when `lock` is "".
            lock=env.key if locks and env.key != env.name else "",
            requester=user,
            channel=channel,
            now=self.services.clock(),
            ttl=env.approval_ttl,
            approvals_required=needed,
            args=cmd.args(),
            # A deploy that needs approval is planned first, a rollback's target checked against helm
            # history: the buttons appear with the plan.
            planned=not (cmd.verb in (Verb.DEPLOY, Verb.ROLLBACK) and needed > 0),
            notes=(frozen,) if frozen else (),
        )

    def _post_card(self, request: Request, env: Environment, respond: Respond) -> None:
        """Post the card. A request that needs nobody's approval is posted as it will stand once queued (no
        buttons, "queued by"), then queued: no card ever says it needs approval when it does not."""
        shown = request.queued_now(self.services.clock()) if request.queues_at_once else request
        text, blocks = messages.card(shown, env)
        try:
            ts = self.services.slack.post(request.channel, text, blocks)
        except SlackError as exc:
            self.audit.transition(
                *self.services.store.transition(request.id, lambda r: r.with_cancel(r.requester, self.services.clock()))
            )
            if request.lock_name:
                self.services.store.release_lock(request.lock_name, request.id)  # claimed with a straight request
            hint = " Invite me to this channel first (`/invite @plate`)." if exc.code == "not_in_channel" else ""
            respond(text=f":warning: I could not post the request here ({exc.code}); nothing was run.{hint}")
            return
        try:
            _, request = self.services.store.transition(request.id, lambda r: r.with_message(ts))
            if not request.planned:
                enqueue_plan(self.services.queue, request)
            elif request.queues_at_once:
                self._queue_now(request, env, respond)
        except Unavailable:
            # Redis went away between the ack and here: say so on the card instead of leaving it waiting
            # for a plan or a job that will never come (the request itself expires in Redis later).
            with contextlib.suppress(SlackError):
                self.services.slack.update(request.channel, ts, messages.unavailable(), [])
            return
        self.home.refresh()

    def _queue_now(self, request: Request, env: Environment, respond: Respond) -> None:
        """Environments and verbs that need no approval go straight to the queue (the card already says
        so; it is edited only if the queueing fails)."""
        try:
            old, request = self.services.store.transition(
                request.id,
                lambda r: r.queued_now(self.services.clock()),
                lock_env=request.lock_name,
                lock_ttl=env.job_timeout,
                on_commit=self._enqueue(env),
                blockers=env.lock_blockers(),
            )
        except LockHeld as exc:
            self.audit.transition(
                *self.services.store.transition(request.id, lambda r: r.with_cancel(r.requester, self.services.clock()))
            )
            self._update_card(request.id, env)
            respond(text=messages.lock_held(env.label, exc.holder))
            return
        self.audit.transition(old, request)
        METRICS.approval("auto", 0.0)

    def _enqueue(self, env: Environment) -> Callable[..., None]:
        def add_job(pipe: Any, _old: Request, new: Request) -> None:
            if new.status is Status.APPROVED:
                enqueue(self.services.queue, pipe, new, env.job_timeout)

        return add_job

    def _update_card(self, request_id: str, env: Environment) -> None:
        request = self.services.store.get(request_id)
        if request is None or request.message_ts is None:
            return
        text, blocks = messages.card(request, env)
        try:
            self.services.slack.update(request.channel, request.message_ts, text, blocks)
        except SlackError:
            log.warning("could not update the request card", extra={"request_id": request_id})

    def _env_name(self, word: str) -> str | None:
        env = self.services.config.resolve(word)
        return env.name if env is not None else None

    def _apps_of(self, env: str) -> tuple[list[str], str | None]:
        e = self.services.config.environments[env]
        return e.app_names(), e.default_app

    def _argocd_target(self, name: str) -> tuple[str, str | None] | None:
        """The environment and app an Argo CD application deploys."""
        for env in self.services.config.environments.values():
            for app in env.apps:
                if env.for_app(app).argocd_app == name:
                    return env.name, app
        return None

    def target(self, request: Request) -> Environment | None:
        return target_of(self.services.config, request)

    def _foreign(self, body: dict[str, Any]) -> str | None:
        """Why a payload is not from plate-bot's own app and workspace (Slack Connect, another org)."""
        workspace = self.services.config.slack
        installed = None if workspace.team_id or workspace.enterprise_id else self.services.slack.installed_team()
        reason = policy.foreign(policy.origin_of(body), workspace, installed)
        if reason is not None:
            security_log.warning("refused a request from %s", reason)
        return reason

    def _check_member(self, user: str, what: str) -> None:
        """Guests and people of other organisations never request or approve changes (NotAllowed)."""
        workspace = self.services.config.slack
        try:
            profile = self.services.slack.profile(user)
        except SlackError as exc:
            raise NotAllowed(
                f"I could not check your Slack account ({exc.code}), so I cannot let you {what}."
            ) from None
        installed = None if workspace.team_id or workspace.enterprise_id else self.services.slack.installed_team()
        if (reason := policy.outsider(user, profile, workspace, installed)) is not None:
            security_log.warning("refused %s to a user %s", what, reason)
            raise NotAllowed(f"Your Slack account is {reason}: only members of this workspace may {what}.")

    def _members(self, ids: list[str]) -> dict[str, frozenset[str]]:
        groups = policy.groups_in(ids)
        return self.services.slack.members(groups) if groups else {}

    # --- buttons ------------------------------------------------------------------------------------------
    def on_request_rollback(self, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        """The incident thread's Request rollback button (value `env` or `env/app`): a rollback request of
        that app by the clicker, through `submit` like `/plate rollback <env> <app>` (same policy,
        approvals and card), posted in the environment's deploy channel (its first `channels` entry) and
        linked both ways with the incident thread. One request per click; a redelivery is a no-op."""
        ack()
        action = (body.get("actions") or [{}])[0]
        user = str((body.get("user") or {}).get("id", ""))
        container = body.get("container") or {}
        clicked_in = str((body.get("channel") or {}).get("id") or container.get("channel_id", ""))
        message = body.get("message") or {}
        thread = str(message.get("thread_ts") or container.get("thread_ts") or message.get("ts") or "")
        click = f"{body.get('trigger_id')}:{action.get('action_ts')}"
        request_id = request_id_for((body.get("team") or {}).get("id"), click)

        def answer(text: str | None) -> None:
            if text:
                respond(text=text, response_type="ephemeral", replace_original=False)

        started = time.perf_counter()
        outcome = ("rollback", "invalid")
        with bind(request_id=request_id, user=user):
            if self._foreign(body) is not None:
                answer(messages.foreign_workspace())
                return
            try:
                cmd = self._rollback_of(str(action.get("value", ""))[:128].strip())
            except UsageError as exc:
                answer(messages.usage_reply(exc.message, self._help()))
            else:
                env = self.services.config.environments[str(cmd.env)]
                channel = env.channels[0] if env.channels else clicked_in
                origin = self._permalink(clicked_in, thread)
                outcome = self.submit(cmd, user, channel, request_id, answer, respond, origin=origin)
                if outcome[1] == "accepted" and thread:
                    self._link_back(request_id, user, clicked_in, thread)
        METRICS.command(outcome[0], outcome[1], time.perf_counter() - started)

    def _rollback_of(self, value: str) -> Command:
        """The button's value, `env` or `env/app`, as a rollback command (UsageError if it names nothing)."""
        env_word, _, app = value.partition("/")
        env = environment(env_word, self._env_name)
        app = choose_app(Verb.ROLLBACK, env, app or None, *self._apps_of(env))
        return Command(verb=Verb.ROLLBACK, env=env, app=app)

    def _permalink(self, channel: str, ts: str) -> str | None:
        if not channel or not ts:
            return None
        try:
            return self.services.slack.permalink(channel, ts)
        except SlackError:
            return None

    def _link_back(self, request_id: str, user: str, channel: str, thread: str) -> None:
        """Say in the incident thread where the rollback request is."""
        request = self.services.store.get(request_id)
        if request is None or request.message_ts is None:
            return
        link = self._permalink(request.channel, request.message_ts)
        try:
            self.services.slack.post(channel, messages.rollback_requested(user, link), thread_ts=thread)
        except SlackError:
            log.warning("could not link the rollback request from the incident thread")

    def on_click(self, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        action = (body.get("actions") or [{}])[0]
        request_id = str(action.get("value", ""))[:64]
        user = str((body.get("user") or {}).get("id", ""))
        # A click on the App Home tab has no channel, message or response_url: answers go onto Home.
        from_home = (body.get("container") or {}).get("type") == "view" or not body.get("response_url")
        with bind(request_id=request_id, user=user):
            if from_home:
                self.home.touch(user)  # so the refresh after the transition includes the clicker
            try:
                if (reason := self._foreign(body)) is not None:
                    self.audit.record(Event.REQUEST_REFUSED, request=None, user=user, detail=f"click from {reason}")
                    raise NotAllowed(messages.foreign_workspace())
                self._click(str(action.get("action_id")), request_id, user)
            except UserError as exc:
                if from_home:
                    self.home.show_notice(user, exc.message)
                else:
                    respond(text=exc.message, response_type="ephemeral", replace_original=False)

    def _click(self, action: str, request_id: str, user: str) -> None:
        request = self.services.store.get(request_id)
        if request is None:
            raise Conflict("I don't know this request any more; it may be older than a week.")
        env = self.target(request)
        if env is None:
            raise Conflict(f"`{request.where}` is no longer configured; nothing was run.")
        now = self.services.clock()
        if request.is_expired(now):
            self.expire(request.id)
            raise Conflict(f"This request expired at {messages.hhmm(request.expires_at)}; nothing was run.")
        if action == messages.CANCEL:
            change: Callable[[Request], Request] = lambda r: r.with_cancel(user, now)  # noqa: E731
        else:
            self._check_member(user, "approve or reject changes")
            approver = policy.is_approver(env, user, self._members(env.approvers))
            if action in (messages.APPROVE, messages.APPROVE_PAUSE):
                option = PAUSE_AUTOSYNC if action == messages.APPROVE_PAUSE else None
                change = lambda r: r.with_approval(user, now, is_approver=approver, option=option)  # noqa: E731
            else:
                change = lambda r: r.with_rejection(user, now, is_approver=approver)  # noqa: E731
        try:
            old, new = self.services.store.transition(
                request.id,
                change,
                lock_env=request.lock_name,
                lock_ttl=env.job_timeout,
                on_commit=self._enqueue(env),
                blockers=env.lock_blockers(),
            )
        except LockHeld as exc:
            raise Conflict(messages.lock_held(env.label, exc.holder)) from None
        log.info("request %s", new.status.value, extra={"by": user, "env": env.label})
        self.audit.transition(old, new)
        if new.status.final:
            METRICS.approval(new.status.value, now - new.created_at)
        self._update_card(new.id, env)
        self.home.refresh()

    def expire(self, request_id: str) -> bool:
        """Mark an overdue request expired and edit its card; False if it was decided meanwhile."""
        request = self.services.store.get(request_id)
        if request is None:
            return False
        env = self.target(request)
        try:
            self.audit.transition(
                *self.services.store.transition(request_id, lambda r: r.with_expiry(self.services.clock()))
            )
        except Conflict:
            return False
        METRICS.approval("expired", self.services.clock() - request.created_at)
        if env is not None:
            self._update_card(request_id, env)
        return True

    def expire_due(self) -> int:
        expired = sum(self.expire(rid) for rid in self.services.store.due_for_expiry(self.services.clock()))
        if expired:
            self.home.refresh()
        return expired

    # --- App Home -----------------------------------------------------------------------------------------
    def on_home_opened(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        if self._foreign(body) is not None:
            return
        with bind(user=str(event.get("user", ""))):
            self.home.opened(str(event.get("user", "")), str(event.get("tab", "home")))


class _QuietTokenWarning(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN itself and warns that our client's token wins; that is intended."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


_bolt_log = logging.getLogger("plate.bolt")
_bolt_log.addFilter(_QuietTokenWarning())


def build_app(services: Services) -> tuple[App, Listeners]:
    app = App(
        signing_secret=services.signing_secret,
        client=services.slack.client,
        process_before_response=False,
        name="plate-bot",
        logger=_bolt_log,
        listener_executor=services.listener_executor,
    )
    listeners = Listeners(services)
    app.command("/plate")(listeners.on_command)
    app.event("app_home_opened")(listeners.on_home_opened)
    for action in (messages.APPROVE, messages.APPROVE_PAUSE, messages.REJECT, messages.CANCEL):
        app.action(action)(listeners.on_click)
    app.action(messages.REQUEST_ROLLBACK)(listeners.on_request_rollback)

    @app.error
    def on_error(error: Exception, body: dict[str, Any], respond: Respond) -> BoltResponse | None:
        error_id = uuid.uuid4().hex[:8]
        log.exception("unhandled error in a listener", extra={"error_id": error_id}, exc_info=error)
        try:
            url = body.get("response_url")
            # Only a verified body reaches a listener (bot.server refuses the rest); the host check
            # is the second lock: an apology never goes to a URL that is not Slack's.
            if isinstance(url, str) and ingress.slack_url(url, services.slack.api_url):
                respond(text=messages.apology(error_id), response_type="ephemeral", replace_original=False)
        except Exception:
            log.warning("could not send the apology", extra={"error_id": error_id})
        return None

    return app, listeners


# The two ways Slack reaches the app; bot.app is the only module that touches Bolt.
def wsgi_handler(app: App) -> Callable[..., Any]:
    """Bolt's WSGI adapter for `app` (bot.server puts its own checks in front of it)."""
    return SlackRequestHandler(app)


def socket_mode(app: App, app_token: str) -> Any:
    """Bolt's Socket Mode handler for `app` (imported here only: HTTP serving never loads it)."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    return SocketModeHandler(app, app_token)
