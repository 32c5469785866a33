"""Paths into the repository and a helper to write test files."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BASIC = REPO / "tests" / "live" / "agent" / "profiles" / "basic.yaml"  # a small valid profile


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def with_its_files(profile_text: str, folder: Path) -> str:
    """A documented profile as on the machine it is written for: every file it names under /etc/pilot/
    (or /config/pilot/ in a container: password, CA, keyring) exists, as a stand-in under `folder`
    (validate warns where one does not)."""
    import re

    for name in sorted(set(re.findall(r"((?:/etc/pilot|/config/pilot)/[\w.-]+)", profile_text))):
        if name.endswith((".yaml", ".yml")):
            continue
        local = folder / Path(name).name
        local.write_text("stand-in\n", encoding="utf-8")
        local.chmod(0o600)
        profile_text = profile_text.replace(name, str(local))
    return profile_text
