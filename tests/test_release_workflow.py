"""The release workflow (.github/workflows/release.yml): actionlint-clean (scripts/test runs it too), a
multi-arch image and the chart pushed to where the chart's image default points, every action pinned."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import helm_python as helm
import pytest
import yaml

from tests.test_dockerfile import DOCKERFILE, HELM_RELEASE, build_args, stages
from tests.test_dockerfile import instructions as dockerfile_instructions

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
CHART = ROOT / "helm-chart"
TEXT = WORKFLOW.read_text()
SPEC = yaml.safe_load(TEXT)
# PyYAML reads the bare key `on` as True (YAML 1.1).
TRIGGER = SPEC.get("on", SPEC.get(True))


def tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found (pip install -e '.[test]')")
    return found


def actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("actionlint"), "-shellcheck", tool("shellcheck"), "-no-color", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


def steps() -> list[dict]:
    return [step for job in SPEC["jobs"].values() for step in job["steps"]]


def uses(prefix: str) -> dict:
    (step,) = [s for s in steps() if s.get("uses", "").startswith(prefix + "@")]
    return step


def test_actionlint_passes():
    proc = actionlint(WORKFLOW)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_really_checks(tmp_path: Path):
    """The linter is no stand-in: a typo in an expression and an unquoted variable in a script fail."""
    broken = tmp_path / ".github" / "workflows" / "release.yml"
    broken.parent.mkdir(parents=True)
    text = TEXT.replace("${{ github.ref_name }}", "${{ github.ref_nme }}", 1)
    text = text.replace("tar -xzf helm.tar.gz linux-amd64/helm", "tar -xzf $HELM_TARBALL linux-amd64/helm", 1)
    broken.write_text(text)
    proc = actionlint(broken)
    assert proc.returncode == 1
    assert "ref_nme" in proc.stdout
    assert "SC2086" in proc.stdout  # ShellCheck, through actionlint


def test_runs_on_version_tags_only():
    assert TRIGGER == {"push": {"tags": ["v*"]}}
    assert SPEC["permissions"] == {"contents": "read"}  # writes only where a job pushes
    for name, job in SPEC["jobs"].items():
        pushes = name in ("image", "chart")
        assert job["permissions"] == ({"contents": "read", "packages": "write"} if pushes else {"contents": "read"})


def test_nothing_is_pushed_before_the_tests_pass():
    jobs = SPEC["jobs"]
    assert jobs["test"]["needs"] == "version"
    assert set(jobs["image"]["needs"]) == {"version", "test"}
    assert set(jobs["chart"]["needs"]) == {"version", "image"}
    (setup,) = [s for s in jobs["test"]["steps"] if s.get("uses", "").startswith("actions/setup-python@")]
    assert setup["with"]["python-version"] == "3.11"  # the image's Python
    assert [s["run"] for s in jobs["test"]["steps"] if "run" in s] == ["scripts/test"]


def test_every_action_is_pinned_to_a_commit():
    for step in steps():
        if "uses" not in step:
            continue
        ref = step["uses"].partition("@")[2]
        assert re.fullmatch(r"[0-9a-f]{40}", ref), step["uses"]
        # The release it is, beside it, for a reader and for updates.
        line = next(line for line in TEXT.splitlines() if step["uses"] in line)
        assert re.search(r"# v\d+\.\d+\.\d+$", line), line


def test_multi_arch_image_to_the_owners_registry():
    uses("docker/setup-qemu-action")
    uses("docker/setup-buildx-action")
    login = uses("docker/login-action")
    assert login["with"]["registry"] == "ghcr.io"
    build = uses("docker/build-push-action")
    assert set(build["with"]["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert build["with"]["push"] is True
    assert build["with"]["tags"] == "${{ needs.version.outputs.image }}:${{ needs.version.outputs.version }}"
    assert 'image=ghcr.io/${owner}/plate-bot"' in TEXT
    assert "OWNER: ${{ github.repository_owner }}" in TEXT
    # The tag must be the package's version (plate_build_info, the chart's appVersion).
    assert "does not match pyproject.toml's version" in TEXT


def test_chart_is_pushed_as_oci_with_the_image_helm():
    chart_steps = " ".join(s.get("run", "") for s in SPEC["jobs"]["chart"]["steps"])
    assert 'helm package helm-chart --version "${VERSION}" --app-version "${VERSION}"' in chart_steps
    assert 'helm push "dist/plate-bot-${VERSION}.tgz" "${CHARTS}"' in chart_steps
    assert 'charts=oci://ghcr.io/${owner}/charts"' in TEXT
    assert "--password-stdin" in chart_steps
    # The helm that packages is the image's, checked against the same published sha256.
    version, checksums = HELM_RELEASE
    assert SPEC["env"] == {"HELM_VERSION": version, "HELM_SHA256_AMD64": checksums["AMD64"]}
    assert chart_steps.index("sha256sum -c") < chart_steps.index("tar -xzf")
    helm_stage = next(s for s in stages(dockerfile_instructions(DOCKERFILE.read_text())) if s[0][1].endswith("helm"))
    assert build_args(helm_stage)["HELM_VERSION"] == version


def test_published_chart_points_at_the_pushed_image(tmp_path: Path):
    """The workflow rewrites image.repository with sed before packaging: the default must be a line that
    sed finds, and the chart must then render the pushed image."""
    (step,) = [s for s in SPEC["jobs"]["chart"]["steps"] if s.get("name") == "Point the chart at the pushed image"]
    pattern = re.search(r'sed -i "s\|(.+?)\|', step["run"]).group(1)
    values = (CHART / "values.yaml").read_text()
    assert re.search(pattern, values, flags=re.MULTILINE), "the sed in release.yml no longer matches values.yaml"
    assert len(re.findall(pattern, values, flags=re.MULTILINE)) == 1
    copy = tmp_path / "plate-bot"
    shutil.copytree(CHART, copy)
    image = "ghcr.io/acme-platform/plate-bot"
    (copy / "values.yaml").write_text(re.sub(pattern, f"  repository: {image}", values, flags=re.MULTILINE))
    with helm.Chart.load(copy) as chart:
        files = chart.render({}, name="plate-bot", namespace="plate-system")
    deployments = [
        doc
        for path, text in files.items()
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc and doc["kind"] == "Deployment"
    ]
    assert {d["spec"]["template"]["spec"]["containers"][0]["image"] for d in deployments} == {f"{image}:0.1.0"}


def test_chart_default_image_is_the_release_path():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert re.fullmatch(r"ghcr\.io/[a-z0-9-]+/plate-bot", values["image"]["repository"])
