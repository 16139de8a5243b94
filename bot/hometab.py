"""App Home: publish the Home tab when a user opens it, and again for recent viewers when something
changes (a request is created or decided, a job ends).

Cheap by construction: the data is one Redis snapshot (no helm, no Kubernetes), and only users who
opened Home within `RECENT` seconds are refreshed, at most `MAX_VIEWERS` of them. Publishing never
raises: Home is a convenience, the request or job that triggered it has already happened.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from bot import policy
from bot.home import home_view
from bot.slack import SlackError, SlackGateway
from bot.store import Store
from config.environments import PlateConfig

log = logging.getLogger("plate.home")
RECENT = 900.0
MAX_VIEWERS = 25


class HomeTab:
    def __init__(
        self,
        config: Callable[[], PlateConfig],
        store: Store,
        slack: SlackGateway,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config, self.store, self.slack, self.clock = config, store, slack, clock

    def opened(self, user: str, tab: str = "home") -> None:
        """`app_home_opened`: remember the viewer and show them the current state."""
        if tab != "home" or not user:
            return
        self.touch(user)
        self.publish([user])

    def touch(self, user: str) -> None:
        """Count `user` as a recent viewer (they opened Home, or clicked a button on it)."""
        try:
            self.store.home_opened(user, self.clock(), window=RECENT)
        except Exception:
            log.warning("could not record the Home viewer", exc_info=True)

    def show_notice(self, user: str, notice: str) -> None:
        """A click on Home has no channel to answer in: the answer goes at the top of the user's Home."""
        self.publish([user], notice=notice)

    def refresh(self) -> int:
        """Re-publish Home for the users who opened it recently; returns how many were published."""
        try:
            users = self.store.home_viewers(self.clock() - RECENT, MAX_VIEWERS)
        except Exception:
            log.warning("could not read the Home viewers", exc_info=True)
            return 0
        return self.publish(users) if users else 0

    def publish(self, users: list[str], notice: str | None = None) -> int:
        config = self.config()
        envs = list(config.environments.values())
        try:
            snapshot = self.store.home_snapshot([e.name for e in envs])
        except Exception:
            log.warning("could not read the Home data", exc_info=True)
            return 0
        groups = sorted({g for e in envs for g in policy.groups_in(e.approvers)})
        members = self.slack.members(groups) if groups else {}
        published = 0
        for user in users:
            approver_of = {e.name for e in envs if policy.is_approver(e, user, members)}
            view: dict[str, Any] = home_view(
                envs, snapshot, viewer=user, approver_of=approver_of, now=self.clock(), notice=notice
            )
            try:
                self.slack.publish_home(user, view)
                published += 1
            except SlackError as exc:
                log.warning("could not publish Home (%s)", exc.code, extra={"user": user})
            except Exception:
                log.warning("could not publish Home", extra={"user": user}, exc_info=True)
        return published
