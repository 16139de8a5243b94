"""Why a step failed, worded for the thread.

    StepFailed           a step could not finish; `message` is safe to post, `details` are thread lines
    ├── KubeError        the Kubernetes API refused or could not be reached
    └── HelmError        helm exited non-zero or ran past its timeout
Anything else raised inside a job is a bug: logged with an id, the thread gets only that id.
"""

from __future__ import annotations


class StepFailed(Exception):
    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class KubeError(StepFailed):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class HelmError(StepFailed):
    def __init__(
        self, message: str, *, stderr: str = "", returncode: int | None = None, timed_out: bool = False
    ) -> None:
        super().__init__(message, [f"```{stderr}```"] if stderr else [])
        self.stderr = stderr
        self.returncode = returncode
        self.timed_out = timed_out
