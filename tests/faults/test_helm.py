"""helm that never finishes: plate-bot's helm adapter (workers.helm) stops it at its deadline, reports it
as a timeout, and leaves no helm, plugin or zombie process behind."""

from __future__ import annotations

import sys
from pathlib import Path

import psutil
import pytest

from sandbox.helm import read_releases, set_behaviour
from tests.faults.conftest import install_release, processes_running
from workers.errors import HelmError
from workers.helm import Helm

pytestmark = pytest.mark.faults
CHART = Path(__file__).resolve().parents[2] / "examples" / "plate-web"


def _leftovers(marker: str) -> list[psutil.Process]:
    """Our children (zombies included: a zombie is a child nobody waited for) and any process at all
    still running `marker`."""
    children = [p for p in psutil.Process().children(recursive=True) if marker in " ".join(_cmdline(p))]
    return children + [p for p in processes_running(marker) if p not in children]


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return [str(proc.pid)]  # a zombie has no command line any more; still count it


def test_hanging_upgrade_is_stopped_at_its_deadline_and_reaped(helm_bin, helm_state) -> None:
    """`helm upgrade` that hangs past the adapter's deadline: HelmError(timed_out) naming the command and
    the limit; helm got SIGTERM (it marks the pending revision failed, --atomic rolls back) and nothing
    of it remains, not even a zombie; the next upgrade works."""
    install_release(helm_bin, "plate-stg", "plate-stg")
    set_behaviour(helm_state, upgrade="hang")
    helm = Helm(str(helm_bin), namespace="plate-stg", kube_context="plate-stg")
    with pytest.raises(HelmError) as stopped:
        helm.run("upgrade", "--install", "plate-web", str(CHART), "--atomic", "--wait", "--timeout", "600s", timeout=1)
    assert stopped.value.timed_out
    assert stopped.value.message == "helm upgrade did not finish within 1s and was stopped"
    assert _leftovers(str(helm_bin)) == []
    statuses = [r["info"]["status"] for r in read_releases(helm_state, "plate-web", "plate-stg")]
    assert statuses == ["superseded", "failed", "deployed"]  # nothing left pending-upgrade
    set_behaviour(helm_state, upgrade="ok")
    helm.run("upgrade", "--install", "plate-web", str(CHART), "--atomic", "--wait", "--timeout", "60s", timeout=60)


def test_helm_and_plugin_that_ignore_sigterm_are_killed(tmp_path: Path) -> None:
    """A helm (and a plugin it started) that ignore SIGTERM: after the grace period the whole process
    group gets SIGKILL; both are gone and reaped."""
    stubborn = tmp_path / "stubborn-helm"
    stubborn.write_text(
        f"#!{sys.executable}\n"
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        # a plugin in the same process group, also deaf to SIGTERM
        "subprocess.Popen([sys.executable, '-c', 'import signal,time; signal.signal(signal.SIGTERM, "
        "signal.SIG_IGN); time.sleep(3600)', 'stubborn-plugin'])\n"
        "time.sleep(3600)\n"
    )
    stubborn.chmod(0o755)
    helm = Helm(str(stubborn), namespace="plate-stg")
    with pytest.raises(HelmError) as stopped:
        helm.run("status", "plate-web", timeout=1)
    assert stopped.value.timed_out
    assert processes_running("stubborn-plugin") == []
    assert _leftovers(str(stubborn)) == []


def test_the_failure_names_helms_error_not_its_deprecation_notices(tmp_path: Path) -> None:
    """Helm 4 prints a notice for `--atomic` (deprecated there, needed by Helm 3) before its error: the step's
    failure line is the error."""
    helm4 = tmp_path / "helm4"
    helm4.write_text(
        "#!/bin/sh\n"
        "echo 'Flag --atomic has been deprecated, use --rollback-on-failure instead' >&2\n"
        "echo 'WARNING: Kubernetes configuration file is group-readable. This is insecure.' >&2\n"
        "echo 'Error: UPGRADE FAILED: context deadline exceeded' >&2\n"
        "exit 1\n"
    )
    helm4.chmod(0o755)
    with pytest.raises(HelmError) as failed:
        Helm(str(helm4), namespace="plate-stg").run("upgrade", "--install", "plate-web", "c", "--atomic", timeout=10)
    assert str(failed.value) == "helm upgrade failed: Error: UPGRADE FAILED: context deadline exceeded"
