"""The checked-in schemas are exactly what `pilot schema` generates, and they are valid 2020-12."""

import json

from jsonschema import Draft202012Validator

from pilot.cli import main
from pilot.profile.schema import dumps, pack_schema, published_schema


def test_checked_in_profile_schema_is_generated(repo):
    on_disk = (repo / "schemas" / "profile.v1.schema.json").read_text(encoding="utf-8")
    assert on_disk == dumps(published_schema()), "run `pilot schema --write schemas` and commit the result"


def test_checked_in_pack_schema_is_generated(repo):
    on_disk = (repo / "schemas" / "pack.v1.schema.json").read_text(encoding="utf-8")
    assert on_disk == dumps(pack_schema())


def test_pilot_schema_prints_the_checked_in_file(repo, capsys):
    assert main(["schema"]) == 0
    assert capsys.readouterr().out == (repo / "schemas" / "profile.v1.schema.json").read_text(encoding="utf-8")


def test_schemas_are_valid_and_every_property_is_described(repo):
    for name in ("profile.v1.schema.json", "pack.v1.schema.json"):
        schema = json.loads((repo / "schemas" / name).read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(schema)
        undescribed: list[str] = []

        def walk(node, path, undescribed=undescribed):
            if isinstance(node, dict):
                for key, sub in (node.get("properties") or {}).items():
                    if isinstance(sub, dict) and "description" not in sub and "$ref" not in sub:
                        undescribed.append(f"{path}.{key}")
                for key, sub in node.items():
                    if key not in ("if",):
                        walk(sub, f"{path}.{key}", undescribed)
            elif isinstance(node, list):
                for i, sub in enumerate(node):
                    walk(sub, f"{path}[{i}]", undescribed)

        walk(schema, "$")
        # `then` branches only narrow properties already described at their definition
        undescribed = [p for p in undescribed if ".then." not in p and ".else." not in p]
        assert undescribed == [], undescribed


def test_published_schema_offers_probe_names_with_docs():
    sensor = published_schema()["$defs"]["sensor"]
    choices = {c["const"]: c["description"] for c in sensor["properties"]["probe"]["anyOf"]}
    assert "cpu.percent" in choices and choices["cpu.percent"]
    assert any(
        rule.get("if", {}).get("properties", {}).get("probe", {}).get("const") == "disk.used_percent"
        for rule in sensor["allOf"]
    )


def test_reference_docs_are_generated_from_the_schema(repo):
    from pilot.profile.docgen import render

    on_disk = (repo / "docs" / "reference.md").read_text(encoding="utf-8")
    assert on_disk == render(), "run `python -m pilot.profile.docgen > docs/reference.md` and commit the result"
