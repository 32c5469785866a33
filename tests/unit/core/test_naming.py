"""Display names and ids derived from profile ids."""

from __future__ import annotations

import pytest

from pilot.naming import did_you_mean, slug, words


@pytest.mark.parametrize(
    ("identifier", "expected"),
    [
        ("cpu_usage", "CPU usage"),
        ("ram_free", "RAM free"),
        ("gpu_temp", "GPU temp"),
        ("ip_address", "IP address"),
        ("nvme_temp", "NVMe temp"),
        ("root_used", "Root used"),
        ("wan_ipv6", "WAN IPv6"),
        ("hot", "Hot"),
        ("cpu", "CPU"),
        ("recipe", "Recipe"),  # only whole words: "ip" inside a word stays as it is
        ("  spaced__out ", "Spaced out"),
    ],
)
def test_default_display_names_write_acronyms_in_capitals(identifier, expected):
    assert words(identifier) == expected


def test_slug_is_a_home_assistant_entity_id_part():
    assert slug("Office PC") == "office_pc"
    assert slug("Café #1!") == "caf_1"
    assert slug("!!!") == "pilot"


def test_did_you_mean_names_the_closest_choice_or_nothing():
    assert did_you_mean("cpu.percnt", ["cpu.percent", "gpu.pstate"]) == " (did you mean 'cpu.percent'?)"
    assert did_you_mean("zzz", ["cpu.percent"]) == ""


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("cpu.usage", "cpu.percent"),
        ("cpu.temp", "thermal.cpu"),
        ("ram.used", "memory.used"),
        ("cpu.percnt", "cpu.percent"),
        ("gpu.temp", "gpu.temperature"),
    ],
)
def test_probe_suggestions_know_the_names_people_reach_for(typo, meant):
    from pilot.registry import PROBES

    assert PROBES.suggest(typo) == meant


def test_every_probe_alias_points_at_a_real_probe():
    from pilot.registry import PROBE_ALIASES, PROBES

    assert {target for target in PROBE_ALIASES.values() if target not in PROBES} == set()
