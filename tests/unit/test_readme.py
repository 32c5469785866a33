"""The README's profile example is valid, and its typo example prints what the README shows."""

import re
from pathlib import Path

from pilot.cli import main


def test_readme_profile_example_validates_and_the_typo_reads_as_shown(repo, tmp_path, capsys, monkeypatch):
    text = (repo / "README.md").read_text(encoding="utf-8")
    profile = re.search(r"```yaml\n(# office-pc.yaml.*?)```", text, re.S).group(1)
    shown = re.search(r"\$ pilot validate office-pc.yaml\n(.*?)\n", text).group(1)
    monkeypatch.chdir(tmp_path)
    # on the machine it is written for, the files it names exist (validate warns where they do not)
    for name in re.findall(r"(/etc/pilot/[\w.]+)", profile):
        local = tmp_path / Path(name).name
        local.write_text("secret\n")
        profile = profile.replace(name, str(local))
    (tmp_path / "office-pc.yaml").write_text(profile)
    assert main(["validate", "--strict", "office-pc.yaml"]) == 0
    (tmp_path / "office-pc.yaml").write_text(profile.replace("{path: /}", "{paht: /}"))
    capsys.readouterr()
    assert main(["validate", "office-pc.yaml"]) == 1
    assert capsys.readouterr().out.splitlines()[0] == shown
