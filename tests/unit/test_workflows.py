"""The GitHub Actions workflows (.github/workflows; docs/ci.md): actionlint finds nothing (with shellcheck
on the `run:` scripts where shellcheck is installed), they match GitHub's workflow schema
(check-jsonschema's vendored copy), and the CI workflow keeps the jobs docs/ci.md describes.
actionlint and check-jsonschema come with the `test` extra (pyproject.toml)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.y*ml"))


def tool(name: str) -> str:
    """The tool from this interpreter's environment (the test extra), else from the PATH."""
    scripts = Path(sys.executable).parent
    for candidate in (scripts / name, scripts / f"{name}.exe"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")
    return found


def ci() -> dict:
    return YAML(typ="safe").load((REPO / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8"))


def test_actionlint_finds_nothing():
    actionlint = tool("actionlint")
    result = subprocess.run([actionlint, "-no-color", *map(str, WORKFLOWS)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_does_find_mistakes():
    """So that a silent actionlint (a broken install, a wrong argument) cannot pass the test above."""
    broken = "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ${{ github.nope }}\n"
    result = subprocess.run([tool("actionlint"), "-no-color", "-"], input=broken, capture_output=True, text=True)
    assert result.returncode == 1 and "nope" in result.stdout, result.stdout + result.stderr


def test_the_workflows_match_githubs_schema():
    checker = tool("check-jsonschema")
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_action_is_pinned_to_a_full_version():
    for path in WORKFLOWS:
        for uses in re.findall(r"^\s*(?:-\s*)?uses:\s*(\S+)", path.read_text(encoding="utf-8"), re.M):
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@v\d+\.\d+\.\d+", uses), f"{path.name}: {uses} (pin a vX.Y.Z)"


def test_the_ci_jobs_are_the_documented_ones():
    workflow = ci()
    jobs = workflow["jobs"]
    assert set(jobs) == {"linux", "windows", "packaging", "release"}

    def runs(job: str) -> str:
        return "\n".join(step.get("run", "") for step in jobs[job]["steps"])

    assert runs("linux").strip() == "./dev test"  # what .ci/run and the README run, nothing else
    assert jobs["windows"]["runs-on"].startswith("windows-")
    for test in ("tests/unit/actions/test_action_windows.py", "tests/unit/service/test_winservice.py"):
        assert test in runs("windows") and (REPO / test).exists(), test
    assert "packaging/build.py deb rpm" in runs("packaging")
    assert "pip wheel --disable-pip-version-check --no-deps -w dist ." in runs("packaging")
    upload = next(s for s in jobs["packaging"]["steps"] if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["with"]["path"].split() == ["dist/*.whl", "dist/*.deb", "dist/*.rpm"]
    release = jobs["release"]
    assert release["if"] == "startsWith(github.ref, 'refs/tags/v')"
    assert set(release["needs"]) == {"linux", "packaging"}
    assert release["permissions"] == {"contents": "write"} and workflow["permissions"] == {"contents": "read"}
    assert "gh release create" in runs("release") and "dist/*" in runs("release")
    assert workflow["on"]["push"]["tags"] == ["v*"]


def test_docs_ci_says_what_has_run_on_windows():
    text = (REPO / "docs" / "ci.md").read_text(encoding="utf-8")
    assert "has never run" in text and "Windows" in text
    for job in ci()["jobs"]:
        assert f"`{job}`" in text, job
