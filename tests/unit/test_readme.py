"""The README's profile example is valid, and its typo example prints what the README shows."""

import re

from pilot.cli import main
from tests.support.files import with_its_files


def test_readme_profile_example_validates_and_the_typo_reads_as_shown(repo, tmp_path, capsys, monkeypatch):
    text = (repo / "README.md").read_text(encoding="utf-8")
    profile = re.search(r"```yaml\n(# office-pc.yaml.*?)```", text, re.S).group(1)
    shown = re.search(r"\$ pilot validate office-pc.yaml\n(.*?)\n", text).group(1)
    monkeypatch.chdir(tmp_path)
    profile = with_its_files(profile, tmp_path)  # as on its machine: the files it names exist
    (tmp_path / "office-pc.yaml").write_text(profile)
    assert main(["validate", "--strict", "office-pc.yaml"]) == 0
    (tmp_path / "office-pc.yaml").write_text(profile.replace("{path: /}", "{paht: /}"))
    capsys.readouterr()
    assert main(["validate", "office-pc.yaml"]) == 1
    assert capsys.readouterr().out.splitlines()[0] == shown
