"""`plate-bot demo`: the real service against loopback fakes, scripted, printing the Slack threads.

Everything plate-bot runs here is production code: the Bolt app behind waitress, signed HTTP requests,
Redis (embedded), RQ workers that fork, helm as a subprocess (a fake CLI that renders the example chart
with a real Helm engine), the incident watcher's own loop (`plate-bot watch`, in a thread), and the
`kubernetes` client against a loopback API server whose simulated controllers roll pods out. Only Slack,
the cluster and helm's cluster side are stand-ins.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from sandbox import harbor
from sandbox.cluster import SimulatedCluster
from sandbox.harbor_registry import FakeHarbor
from sandbox.helm import install_wrapper, set_behaviour
from sandbox.kubeapi import FakeKubeAPI
from sandbox.signing import action_body, post, sign, slash_body
from sandbox.slack import FakeSlack, Message, render_blocks

SECRET = "demo-signing-secret"  # noqa: S105 - the demo signs its own loopback requests
CHANNEL = "C0DEPLOYS"
INCIDENTS = "C0INCIDENTS"  # the example config's incident_channel
# What 9.9.9's container printed before it crashed (the diagnosis reads it back with previous=true).
CRASH_LOG = """\
plate-web 9.9.9 starting
loading config from /etc/plate/config.yaml
connecting to postgres://plate-db:5432/plate
panic: config: required key `session.secret_key` is missing
goroutine 1 [running]:
main.main()
\t/src/cmd/plate-web/main.go:42 +0x1d5
"""
EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "config" / "plate.example.yaml"
# What the demo's Harbor holds: every tag the script deploys, and one tag it asks for that is not there.
HARBOR_IMAGES = {"plate/plate-web": ("1.3.0", "1.4.0", "1.5.0", "9.9.9"), "plate/plate-api": ("2.0.0", "2.1.0")}
# The seed's Argo CD Application for prod (automated sync): a rollback must offer to pause it.
ARGOCD_APP = {
    "apiVersion": "argoproj.io/v1alpha1",
    "kind": "Application",
    "metadata": {"name": "plate-web-prod", "namespace": "argocd"},
    "spec": {"syncPolicy": {"automated": {"prune": True, "selfHeal": True}, "retry": {"limit": 2}}},
}


class Demo:
    def __init__(self, workdir: Path, quiet: bool) -> None:
        self.workdir = workdir
        self.quiet = quiet
        self.slack = FakeSlack(usergroups={"S0SRE": ["U0CAROL"]}).start()
        self.kube = FakeKubeAPI().start()
        self.cluster = SimulatedCluster(self.kube, ready_after=0.2).start()
        self.helm_state = workdir / "helm"
        self.helm_state.mkdir()
        self.helm_bin = install_wrapper(workdir / "bin", self.helm_state)
        self.kubeconfig = self.kube.write_kubeconfig(
            str(workdir / "kubeconfig"), {"plate-stg": "stg-cluster", "plate-prod": "prod-cluster"}
        )
        # harbor.example.com, as the example config and charts name it, answers on loopback (registry_url).
        self.harbor = FakeHarbor(harbor.USER, harbor.PASSWORD).__enter__()
        for repository, tags in HARBOR_IMAGES.items():
            for age, tag in enumerate(reversed(tags)):
                self.harbor.push(repository, tag, pushed_ago=86400 * (age + 1))
        self.harbor.scanned("plate/plate-web", "1.5.0", critical=0, high=2, medium=7, ago=3 * 3600)
        self.harbor.sign("plate/plate-web", "1.5.0")
        self.config = self.workdir / "plate.yaml"
        self.runtime: Any = None
        self.url = ""
        self._triggers = 0
        self.watcher: Any = None
        self._watching = threading.Event()

    # --- set-up -------------------------------------------------------------------------------------
    def environment(self) -> dict[str, str]:
        return {
            "SLACK_BOT_TOKEN": "xoxb-demo-000000000000-demotokendemotoken",
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": self.slack.api_url,
            "PLATE_CONFIG": str(self.config),
            "HELM_BIN": str(self.helm_bin),
            "KUBECONFIG": self.kubeconfig,
            "FAKE_HELM_STATE": str(self.helm_state),
            "FAKE_HELM_KUBE_URL": self.kube.url,
            "PLATE_DATA_DIR": str(self.workdir / "data"),
            "LOG_LEVEL": "WARNING",
        }

    def start(self) -> None:
        from bot.runtime import build_runtime
        from config.environments import load_config
        from config.settings import Settings
        from core import logs

        self.config.write_text(yaml.safe_dump(demo_config(self.harbor.url)))
        os.environ.update(self.environment())
        os.environ.pop("REDIS_URL", None)  # embedded Redis, as a newcomer's laptop has none
        logs.configure("WARNING")
        for ns in ("plate-stg", "plate-prod", "kube-system"):
            self.kube.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            if ns != "kube-system":  # the pull secret External Secrets keeps there: plate-bot reads Harbor with it
                self.kube.put(harbor.pull_secret(ns, "harbor.example.com"))
        settings = Settings()
        self.runtime = build_runtime(settings, load_config(settings.plate_config))
        server = self.runtime.http_server("127.0.0.1", 0)
        threading.Thread(target=self.runtime.run_http, args=(server,), daemon=True).start()
        self.url = f"http://127.0.0.1:{server.effective_port}/slack/events"

    def watch(self) -> None:
        """`plate-bot watch` alongside serve and the workers: the real loop, with a demo's short timings
        (quick posts and edits, 5 s of quiet before an incident counts as resolved)."""
        # The watcher is a thread here, and the workers fork: a fork while the thread imports one of the
        # kubernetes client's lazily loaded API classes would leave the work-horse waiting on that import's
        # lock forever. Loaded here first, they are inherited instead (and the horses start faster).
        from kubernetes import client

        from config.environments import load_config
        from config.settings import Settings
        from workers.watcher.main import build
        from workers.watcher.watcher import Tuning

        for api in ("CoreV1Api", "AppsV1Api", "NetworkingV1Api", "AutoscalingV2Api", "CustomObjectsApi"):
            getattr(client, api)
        settings = Settings()
        tuning = Tuning(post_interval=0.05, updates_per_minute=600, update_interval=0.5, quiet=5.0, tick=0.05)
        self.watcher = build(settings, load_config(settings.plate_config), self.runtime.store, tuning)
        threading.Thread(target=self.watcher.run, args=(self._watching,), name="plate-watch", daemon=True).start()
        self.wait(lambda: self.watcher.active and all(s.lists for s in self.watcher.streams))  # before any fork

    def stop(self) -> None:
        self._watching.set()
        if self.runtime is not None:
            self.runtime.shutdown()
            from core.redisconn import stop_embedded

            stop_embedded()
        self.cluster.stop()
        self.kube.stop()
        self.slack.stop()
        self.harbor.__exit__()

    # --- driving it like people in Slack would --------------------------------------------------------
    def command(self, user: str, text: str) -> str:
        self._triggers += 1
        body = slash_body(
            text,
            user=user,
            channel=CHANNEL,
            trigger_id=f"demo-{self._triggers}",
            response_url=self.slack.response_url(user, user=user),
        )
        _status, _headers, data = post(self.url, body, sign(SECRET, body))
        self.say(f"\n$ {user} types: /plate {text}")
        shown = data.decode()
        if shown.startswith("{"):  # an ack with blocks (`/plate apps`): shown as Slack renders it
            reply = json.loads(shown)
            shown = "\n".join(render_blocks(reply.get("blocks") or []) or [str(reply.get("text", ""))])
        if shown:
            self.say(textwrap.indent(shown, "  (only you can see this) "))
        return data.decode()

    def click(self, user: str, action: str, request_id: str) -> None:
        before = len(self.slack.hooks)
        updates = len(self.slack.calls_to("chat.update"))
        body = action_body(
            action, request_id, user=user, channel=CHANNEL, response_url=self.slack.response_url(user, user=user)
        )
        post(self.url, body, sign(SECRET, body))
        self.say(f"\n$ {user} clicks {action.removeprefix('plate_').replace('_', ' ').capitalize()}")
        # The click is answered either ephemerally (refused) or by an edit of the card (accepted).
        self.wait(lambda: len(self.slack.hooks) > before or len(self.slack.calls_to("chat.update")) > updates)
        for _name, hook in self.slack.hooks[before:]:
            self.say(textwrap.indent(str(hook.get("text", "")), "  (only you can see this) "))

    def work(self) -> None:
        """Drain the queue with a real forking RQ worker, as `plate-bot worker --burst` would."""
        from rq import Worker

        from core.queue import worker_options

        self.wait(lambda: self.runtime.queue.count > 0)
        Worker([self.runtime.queue], connection=self.runtime.worker_connection(), **worker_options()).work(
            burst=True, logging_level="WARNING"
        )

    def request_rollback(self, user: str, root: Message) -> None:
        """A click on the incident thread's Request rollback button (its value: the environment's label)."""
        value = next(
            e["value"]
            for m in self.slack.thread(INCIDENTS, root.ts)
            for b in m.blocks
            if b.get("type") == "actions"
            for e in b.get("elements", [])
            if e.get("action_id") == "plate_request_rollback"
        )
        cards = len(self.slack.messages(CHANNEL))
        body = action_body("plate_request_rollback", value, user=user, channel=INCIDENTS, message_ts=root.ts,
                           response_url=self.slack.response_url(user, user=user))  # fmt: skip
        post(self.url, body, sign(SECRET, body))
        self.say(f"\n$ {user} clicks Request rollback in the incident thread")
        self.wait(lambda: len(self.slack.messages(CHANNEL)) > cards)

    def incident(self) -> Message:
        """The incident's root message in the incident channel, once the watcher has posted its diagnosis."""
        self.wait(lambda: any(m.thread_ts for m in self.slack.messages(INCIDENTS)), timeout=20)
        return next(m for m in self.slack.messages(INCIDENTS) if not m.thread_ts or m.thread_ts == m.ts)

    def _signal_when_diagnosed(self, flag: Path) -> None:
        """Touch `flag` once the incident's diagnosis thread is posted and its root edited by a recurrence."""

        def diagnosed() -> bool:
            roots = [m for m in self.slack.messages(INCIDENTS) if not m.thread_ts or m.thread_ts == m.ts]
            replies = [m for m in self.slack.messages(INCIDENTS) if m.thread_ts and m.thread_ts != m.ts]
            said = [m.text + json.dumps(m.blocks) for m in replies]
            return bool(roots and roots[0].edits and any("What changed recently" in text for text in said))

        self.wait(diagnosed, timeout=30)
        flag.touch()

    def show_incident(self, title: str, messages: list[Message]) -> None:
        self.say(f"\n--- #{INCIDENTS} · {title} " + "-" * max(0, 60 - len(title)))
        for msg in messages:
            indent = "    " if msg.thread_ts and msg.thread_ts != msg.ts else ""
            lines = [msg.text, *(line for line in render_blocks(msg.blocks) if line != msg.text)]
            lines[0] += " (edited)" if msg.edits else ""
            self.say("\n".join(indent + part for line in lines if line for part in line.splitlines()))

    def last_request(self) -> Any:
        ids = [k.decode().rsplit(":", 1)[-1] for k in self.runtime.connection.keys("plate:req:*")]
        requests = [self.runtime.store.get(i) for i in ids]
        return max(requests, key=lambda r: r.created_at)

    def show_thread(self, title: str) -> None:
        card = [m for m in self.slack.messages(CHANNEL) if not m.thread_ts or m.thread_ts == m.ts][-1]
        self.say(f"\n--- #{CHANNEL} · {title} " + "-" * max(0, 60 - len(title)))
        self.say(self.slack.render_thread(CHANNEL, card.ts))

    def wait(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate() and time.monotonic() < deadline:
            time.sleep(0.02)

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)

    # --- the script -----------------------------------------------------------------------------------
    def script(self) -> None:
        self.say("plate-bot demo: the real service (HTTP, Redis, RQ, helm subprocess, kubernetes client)")
        self.say("against a loopback Slack, Kubernetes API and helm. Everyone below is simulated.")
        self.watch()  # `plate-bot watch`, posting incidents into #C0INCIDENTS
        self.command("U0BOB", "help")
        self.command("U0BOB", "deploy moon")
        self.command("U0BOB", "deploy stg 1.4.0")
        self.work()
        self.cluster.settle()
        self.show_thread("staging deploy: no approval needed")

        self.command("U0BOB", "status stg")
        self.work()
        self.show_thread("status stg")

        self.command("U0BOB", "deploy stg plate-api 2.1.0")  # stg's second app: its own release and lock
        self.work()
        self.cluster.settle()
        self.show_thread("staging deploy of the second app, plate-api")
        self.command("U0BOB", "apps")

        self.cluster.settle()
        self.command("U0BOB", "deploy prod 1.6.0")  # not pushed: found before anyone is asked
        self.work()
        self.show_thread("a tag that does not exist: the plan fails before approval")

        self.command("U0BOB", "deploy prod 1.5.0")
        self.work()  # the plan job: lint, render, image digests and Harbor's scan, diff, digest onto the card
        request = self.last_request()
        self.show_thread("production deploy: planned, image pinned by digest, waiting for approval")
        self.click("U0BOB", "plate_approve", request.id)
        self.click("U0EVE", "plate_approve", request.id)
        self.click("U0CAROL", "plate_approve", request.id)
        self.work()
        self.show_thread("production deploy: approved by a second person and run")

        # The new version crashes while helm waits for it: the incident watcher opens an incident. helm's
        # wait (at most 30 s) ends once the incident is diagnosed and its counter edited, not at a guess.
        self.cluster.fail_images(r":9\.9\.9(@sha256:[0-9a-f]+)?$", "CrashLoopBackOff", log=CRASH_LOG)
        diagnosed = self.workdir / "incident-diagnosed"
        set_behaviour(self.helm_state, upgrade="atomic-rollback", timeout_seconds=30, wait_for=str(diagnosed))
        self.cluster.settle()
        self.command("U0BOB", "deploy prod 9.9.9")
        self.work()
        request = self.last_request()
        self.click("U0CAROL", "plate_approve", request.id)
        threading.Thread(target=self._signal_when_diagnosed, args=(diagnosed,), daemon=True).start()
        self.work()
        self.show_thread("production deploy that fails: pod events and the atomic rollback")

        root = first = self.incident()
        if root.history:  # the root as first posted, before the watcher's counter edits
            first = replace(root, text=root.history[0]["text"], blocks=root.history[0]["blocks"], edits=0)
        self.show_incident("incident opened: the diagnosis thread", [first, *self.slack.thread(INCIDENTS, root.ts)[1:]])
        self.wait(lambda: self.slack.thread(INCIDENTS, root.ts)[0].edits > 0)
        self.show_incident("the crash recurs: the root's counter is edited", self.slack.thread(INCIDENTS, root.ts)[:1])
        seen = len(self.slack.thread(INCIDENTS, root.ts))

        self.cluster.clear_failures()
        set_behaviour(self.helm_state, upgrade=None, timeout_seconds=None, wait_for=None)
        self.kube.put(ARGOCD_APP)
        self.request_rollback("U0BOB", root)
        self.work()  # the target check: helm history, both revisions, plate-bot's records and backups, Argo CD
        request = self.last_request()
        self.click("U0CAROL", "plate_approve_pause", request.id)
        self.work()
        self.cluster.settle()
        self.show_thread("rollback from the incident: card in the deploy channel, auto-sync paused")
        self.wait(lambda: "Resolved" in self.slack.thread(INCIDENTS, root.ts)[-1].text, timeout=30)
        self._watching.set()
        self.show_incident("resolved once plate-web is healthy again", self.slack.thread(INCIDENTS, root.ts)[seen:])

        self.command("U0BOB", "history prod")
        self.work()
        self.show_thread("history prod: helm history joined with plate-bot's own record")
        # Harbor: OpenBao revoked the SecretStore's token; ESO stopped syncing; new pods cannot pull.
        for obj in harbor.store_outage("plate-stg", "harbor.example.com"):
            self.kube.put(obj)
        self.cluster.fail_images(r"plate-web:1\.4\.0(@sha256:[0-9a-f]+)?$", "Unauthorized")
        # The robot's new secret never reached the stale Secret.
        self.harbor.password = "rotated-Robot-pw-7"  # noqa: S105 - a fake, on loopback
        self.command("U0BOB", "harbor-verify stg")
        self.work()
        self.show_thread("harbor-verify: a failing image pull, walked back to the SecretStore")
        self.say("\nDone. Every message above went through the fake Slack Web API over HTTP.")


def demo_config(harbor_url: str) -> dict[str, Any]:
    """The example config, its paths made absolute (it is written elsewhere), with every environment's
    Harbor reached at the loopback one."""
    config = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    base = EXAMPLE_CONFIG.parent

    def absolute(path: str) -> str:
        return str((base / path).resolve())

    for env in config["environments"].values():
        env.setdefault("harbor", {})["registry_url"] = harbor_url
        if "manifests_dir" in env["harbor"]:
            env["harbor"]["manifests_dir"] = absolute(env["harbor"]["manifests_dir"])
        for app in env.get("apps", {}).values():
            app["chart"] = absolute(app["chart"])
            app["values"] = [absolute(v) for v in app.get("values", [])]
    return config


def main(quiet: bool = False) -> int:
    try:
        import helm_python  # noqa: F401 - the stand-in helm renders charts with it
    except ImportError:
        print("plate-bot demo: install the demo extra first: pip install -e '.[demo]'", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="plate-demo-") as tmp:
        demo = Demo(Path(tmp), quiet)
        try:
            demo.start()
            demo.script()
        finally:
            demo.stop()
    return 0
