"""Mutation testing of the trust layer: how many deliberate bugs the unit tests catch.

    ./dev mutate                 every target below
    ./dev mutate signing policy  some of them
    ./dev mutate --show signing  also print the diff of each surviving mutant

mutmut rewrites each function of a target many ways (a flipped comparison, a changed constant, a
dropped call) and runs the unit tests that reach it; a mutant the tests still pass is a bug they
would miss. Scores and the survivors judged equivalent are in docs/mutation.md.

mutmut names mutants by module path and only strips a leading `src/`, so each target runs in a
copy of the working tree under build/mutation/<target>/ with `engine/` renamed `src/`. The copy is
kept: mutmut reuses its results for functions that did not change, as long as the tests did not
change either (mutmut would keep a stale "survived"; a change under tests/ or testkit/ starts the
target afresh). Not part of `./dev test`: a run takes minutes per target (figures in docs/mutation.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "build" / "mutation"

# target -> (module under engine/, the unit tests that must catch its mutants)
TARGETS: dict[str, tuple[str, list[str]]] = {
    "signing": (
        "pilot/agent/signing.py",
        ["tests/unit/agent/test_signing.py", "tests/unit/agent/test_signing_vectors.py"],
    ),
    "policy": (
        "pilot/agent/policy.py",
        ["tests/unit/agent/test_policy.py", "tests/unit/agent/test_guard_chain.py"],
    ),
    "commands": (
        "pilot/agent/commands.py",
        [
            "tests/unit/agent/test_guard_chain.py",
            "tests/unit/agent/test_command_service.py",
            "tests/unit/agent/test_child_commands.py",
        ],
    ),
}

# mutmut's words for a mutant's fate; "killed" and "timeout" mean the tests noticed
CAUGHT = {"killed", "timeout"}


def tracked_files() -> list[str]:
    """What git would commit (tracked and untracked, minus ignored): the copy holds nothing else."""
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout
    return [name for name in out.decode().split("\0") if name]


def prepare(target: str) -> Path:
    module, tests = TARGETS[target]
    work = OUT / target
    work.mkdir(parents=True, exist_ok=True)
    for name in tracked_files():
        src = REPO / name
        if not src.is_file():
            continue  # deleted in the working tree
        dst = work / ("src" + name[len("engine") :] if name.startswith("engine/") else name)
        if dst.exists() and dst.read_bytes() == src.read_bytes():
            continue  # unchanged: keeps mutmut's cache valid
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    tests = [t for t in tests if (work / t).is_file()]
    if not tests:
        sys.exit(f"mutate: {target}: none of its test files exist")
    pyproject = (work / "pyproject.toml").read_text()
    pyproject = pyproject.replace('pythonpath = ["engine", "."]', 'pythonpath = ["src", "."]')
    pyproject = pyproject.split("\n[tool.mutmut]")[0]
    pyproject += (
        "\n[tool.mutmut]\n"
        'source_paths = ["src"]\n'
        f'only_mutate = ["src/{module}"]\n'
        'also_copy = ["testkit", "tests", "profiles", "schemas"]\n'
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
    )
    (work / "pyproject.toml").write_text(pyproject)
    # tests that locate data through REPO / "engine" find the same files, unmutated
    link = work / "engine"
    if not link.exists():
        link.symlink_to("src")
    return work


def tests_digest(work: Path) -> str:
    """A fingerprint of everything that decides a verdict besides the mutated module itself."""
    digest = hashlib.sha256()
    for folder in ("tests", "testkit"):
        for path in sorted((work / folder).rglob("*.py")):
            digest.update(str(path.relative_to(work)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def forget_stale_verdicts(work: Path) -> None:
    stamp = work / ".tests-digest"
    now = tests_digest(work)
    if stamp.exists() and stamp.read_text() != now:
        shutil.rmtree(work / "mutants", ignore_errors=True)
    stamp.write_text(now)


def results(work: Path) -> dict[str, str]:
    out = subprocess.run(
        [str(Path(sys.executable).parent / "mutmut"), "results", "--all", "true"],
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    fates: dict[str, str] = {}
    for line in out.splitlines():
        name, sep, fate = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            fates[name] = fate
    return fates


def run(target: str, show: bool) -> dict:
    work = prepare(target)
    forget_stale_verdicts(work)
    mutmut = str(Path(sys.executable).parent / "mutmut")
    done = subprocess.run([mutmut, "run"], cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"mutate: {target}: mutmut failed:\n{done.stderr[-2000:]}")
    fates = results(work)
    caught = sorted(n for n, f in fates.items() if f in CAUGHT)
    missed = sorted(n for n, f in fates.items() if f not in CAUGHT)
    total = len(fates)
    score = 100.0 * len(caught) / total if total else 0.0
    print(f"{target}: {len(caught)} of {total} mutants caught ({score:.1f} %)")
    for name in missed:
        print(f"  {fates[name]:>10}  {name}")
        if show:
            diff = subprocess.run([mutmut, "show", name], cwd=work, capture_output=True, text=True).stdout
            print("      " + "\n      ".join(diff.splitlines()[1:]))
    summary = {"target": target, "caught": len(caught), "total": total, "score": round(score, 1), "missed": missed}
    (OUT / f"{target}.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev mutate", description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="*", metavar="TARGET", help="one of: " + ", ".join(TARGETS))
    parser.add_argument("--show", action="store_true", help="print each surviving mutant's diff")
    args = parser.parse_args(argv)
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown target {unknown[0]!r} (choose from {', '.join(TARGETS)})")
    for target in args.targets or list(TARGETS):
        run(target, args.show)
    return 0


if __name__ == "__main__":
    sys.exit(main())
