"""PURE. A job's checklist: steps that go pending -> running -> done | failed | skipped | warned, with
durations. Warned: the step ran and could not tell, without failing the job (harbor-verify's registry
check from plate-bot's pod).

Time is passed in so rendering and transitions are tested without a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum


class StepState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    WARNED = "warned"


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    state: StepState = StepState.PENDING
    started: float | None = None
    ended: float | None = None
    note: str = ""

    def duration(self, now: float) -> float | None:
        if self.started is None:
            return None
        return (self.ended if self.ended is not None else now) - self.started


class Outcome(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class Progress:
    title: str
    steps: tuple[Step, ...]
    outcome: Outcome = Outcome.QUEUED
    started: float | None = None
    ended: float | None = None
    summary: str = ""
    extra: tuple[str, ...] = field(default=())

    @classmethod
    def checklist(cls, title: str, steps: list[tuple[str, str]]) -> Progress:
        return cls(title, tuple(Step(key, label) for key, label in steps))

    def _with_step(self, key: str, **changes: object) -> Progress:
        if not any(s.key == key for s in self.steps):
            raise KeyError(f"no step {key!r} in {self.title!r}")
        steps = tuple(replace(s, **changes) if s.key == key else s for s in self.steps)  # type: ignore[arg-type]
        return replace(self, steps=steps)

    def step(self, key: str) -> Step:
        for s in self.steps:
            if s.key == key:
                return s
        raise KeyError(f"no step {key!r} in {self.title!r}")

    def start(self, key: str, now: float) -> Progress:
        began = self if self.started is not None else replace(self, started=now, outcome=Outcome.RUNNING)
        return began._with_step(key, state=StepState.RUNNING, started=now, ended=None)

    def done(self, key: str, now: float, note: str = "") -> Progress:
        return self._with_step(key, state=StepState.DONE, ended=now, note=note)

    def fail(self, key: str, now: float, note: str = "") -> Progress:
        return self._with_step(key, state=StepState.FAILED, ended=now, note=note)

    def warn(self, key: str, now: float, note: str = "") -> Progress:
        return self._with_step(key, state=StepState.WARNED, ended=now, note=note)

    def skip(self, key: str, note: str = "") -> Progress:
        return self._with_step(key, state=StepState.SKIPPED, note=note)

    def finish(self, now: float, *, ok: bool, summary: str = "") -> Progress:
        """Close the checklist: running steps fail with the job, pending ones are marked skipped."""
        steps = []
        for s in self.steps:
            if s.state is StepState.RUNNING:
                s = replace(s, state=StepState.DONE if ok else StepState.FAILED, ended=now)
            elif s.state is StepState.PENDING:
                s = replace(s, state=StepState.SKIPPED)
            steps.append(s)
        outcome = Outcome.SUCCEEDED if ok else Outcome.FAILED
        return replace(self, steps=tuple(steps), outcome=outcome, ended=now, summary=summary)

    def running_step(self) -> Step | None:
        return next((s for s in self.steps if s.state is StepState.RUNNING), None)
