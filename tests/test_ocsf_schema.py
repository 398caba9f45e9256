"""The OCSF oracle itself under test: does tests/ocsf/ocsf_jsonschema.py say what OCSF 1.1.0 says?

Other tests validate rows against ``class_schema()``; they are only as good as that schema. So
here a complete Detection Finding must pass, and each single, deliberate mistake must fail for
the expected reason (the JSON path and JSON Schema keyword of the error are checked, and that it
is the only error, so a test cannot pass because something else broke). A last group reads the
shipped OCSF files directly, without the generator, and compares a few facts with the schema.
"""
from __future__ import annotations

import hashlib
import json
import re

import jsonschema
import pytest

from ocsf.ocsf_jsonschema import SCHEMA_DIR, class_schema, schema_files

CLASS_FILE = "events/findings/detection_finding.json"


@pytest.fixture(scope="module")
def schema() -> dict:
    return class_schema(CLASS_FILE)


@pytest.fixture(scope="module")
def validator(schema) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema)


def valid_finding() -> dict:
    """A complete Detection Finding as the pipeline's rows would carry it (no profiles)."""
    return {
        "activity_id": 1,
        "category_uid": 2,
        "class_uid": 2004,
        "type_uid": 200401,
        "time": 1_706_000_000_123,
        "severity_id": 4,
        "severity": "High",
        "status_id": 1,
        "status": "New",
        "message": "Terminal shell in container",
        "metadata": {
            "version": "1.1.0",
            "product": {"name": "Falco", "vendor_name": "Panoptica"},
            "uid": "evt-0001",
            "labels": ["falco", "k8s"],
        },
        "finding_info": {
            "uid": "finding-0001",
            "title": "Terminal shell in container",
            "desc": "A shell was spawned in a container with an attached terminal.",
            "types": ["Falco Rule"],
            "created_time": 1_706_000_000_000,
            "attacks": [{
                "tactic": {"name": "Execution", "uid": "TA0002"},
                "technique": {"name": "Command and Scripting Interpreter", "uid": "T1059"},
                "version": "14",
            }],
        },
        "resources": [{"type": "pod", "uid": "4f1c-pod-uid", "name": "web-0", "namespace": "prod"}],
        "evidences": [{"process": {"pid": 4242, "cmd_line": "bash -i"}}],
        "unmapped": {"k": "v"},
    }


def failures(validator, doc) -> set[tuple[str, str]]:
    """(JSON path, failing keyword) of every top-level validation error of ``doc``."""
    return {(e.json_path, e.validator) for e in validator.iter_errors(doc)}


# ---------------------------------------------------------------- the schema itself
def test_generated_schema_is_valid_draft_2020_12(schema):
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_every_ref_points_to_a_def(schema):
    refs = set(re.findall(r'"\$ref": "#/\$defs/([^"]+)"', json.dumps(schema)))
    assert refs and refs <= set(schema["$defs"])


def test_complete_detection_finding_is_valid(validator):
    assert failures(validator, valid_finding()) == set()


def test_free_objects_accept_anything_object_shaped(validator):
    doc = valid_finding()
    doc["unmapped"] = {"falco": {"output_fields": {"proc.name": "bash"}}, "tags": ["a", 1]}
    doc["evidences"][0]["data"] = [1, "two", {"three": 3}]  # json_t: any JSON value
    doc["evidences"][0]["process"]["xattributes"] = {"security.selinux": "unconfined"}
    assert failures(validator, doc) == set()


def test_every_type_uid_of_the_class_goes_with_its_activity(validator):
    for activity_id in (0, 1, 2, 3, 99):
        doc = valid_finding() | {"activity_id": activity_id, "type_uid": 200400 + activity_id}
        assert failures(validator, doc) == set(), activity_id


# ---------------------------------------------------------------- single mistakes
def _del(path):
    def mutate(doc):
        *parents, last = path
        for key in parents:
            doc = doc[key]
        del doc[last]
    return mutate


def _set(path, value):
    def mutate(doc):
        *parents, last = path
        for key in parents:
            doc = doc[key]
        doc[last] = value
    return mutate


MISTAKES = {
    # name: (mutation, the one error it must cause, or the set of errors)
    "finding_info.uid missing": (_del(["finding_info", "uid"]), ("$.finding_info", "required")),
    "finding_info.title missing": (_del(["finding_info", "title"]), ("$.finding_info", "required")),
    "metadata.product.vendor_name missing": (
        _del(["metadata", "product", "vendor_name"]), ("$.metadata.product", "required")),
    "metadata.version missing": (_del(["metadata", "version"]), ("$.metadata", "required")),
    "severity_id 9": (_set(["severity_id"], 9), ("$.severity_id", "enum")),
    "severity_id missing": (_del(["severity_id"]), ("$", "required")),
    "class_uid 2001": (_set(["class_uid"], 2001), ("$.class_uid", "const")),
    "category_uid 1": (_set(["category_uid"], 1), ("$.category_uid", "const")),
    "type_uid of another activity": (_set(["type_uid"], 200402), ("$.type_uid", "const")),
    "type_uid of another class": (  # not in the class's list, and not 2004 * 100 + activity_id
        _set(["type_uid"], 200101), {("$.type_uid", "enum"), ("$.type_uid", "const")}),
    "invented top-level field": (_set(["rule_name"], "x"), ("$", "additionalProperties")),
    "invented field in finding_info": (
        _set(["finding_info", "rule"], "x"), ("$.finding_info", "additionalProperties")),
    "time as a string": (_set(["time"], "2024-01-23T08:53:20Z"), ("$.time", "type")),
    "unmapped not an object": (_set(["unmapped"], "k=v"), ("$.unmapped", "type")),
    "evidence with none of its at_least_one": (_set(["evidences"], [{}]), ("$.evidences[0]", "anyOf")),
    "process with neither pid nor uid": (
        _set(["evidences", 0, "process"], {"cmd_line": "bash -i"}), ("$.evidences[0].process", "anyOf")),
    "resource with neither name nor uid": (
        _set(["resources", 0], {"type": "pod", "namespace": "prod"}), ("$.resources[0]", "anyOf")),
    "attack with no tactic, technique nor sub_technique": (
        _set(["finding_info", "attacks", 0], {"version": "14"}), ("$.finding_info.attacks[0]", "anyOf")),
    "tactic with neither name nor uid": (
        _set(["finding_info", "attacks", 0, "tactic"], {"src_url": "https://attack.mitre.org/"}),
        ("$.finding_info.attacks[0].tactic", "anyOf")),
    "technique with neither name nor uid": (
        _set(["finding_info", "attacks", 0, "technique"], {}), ("$.finding_info.attacks[0].technique", "anyOf")),
    # Profile-gated attributes: rows use no profiles, so these are not part of the class.
    "attacks at top level (security_control profile)": (
        _set(["attacks"], []), ("$", "additionalProperties")),
    "device (host profile)": (_set(["device"], {"hostname": "node-1"}), ("$", "additionalProperties")),
    "cloud (cloud profile)": (_set(["cloud"], {"provider": "AWS"}), ("$", "additionalProperties")),
    "process.container (container profile)": (
        _set(["evidences", 0, "process", "container"], {"uid": "c1"}),
        ("$.evidences[0].process", "additionalProperties")),
    "resource region (inline cloud profile)": (
        _set(["resources", 0, "region"], "eu-west-1"), ("$.resources[0]", "additionalProperties")),
}


@pytest.mark.parametrize("name", list(MISTAKES))
def test_single_mistake_is_rejected_for_its_reason(validator, name):
    mutate, expected = MISTAKES[name]
    doc = valid_finding()
    mutate(doc)
    assert failures(validator, doc) == (expected if isinstance(expected, set) else {expected})


# ---------------------------------------------------------------- facts read straight from OCSF
def _ocsf(rel: str) -> dict:
    return json.loads((SCHEMA_DIR / rel).read_text(encoding="utf-8"))


def _keys(*enums) -> list[int]:
    return sorted({int(k) for enum in enums for k in enum})


def test_enums_and_constants_match_the_ocsf_files(schema):
    dictionary = _ocsf("dictionary.json")["attributes"]
    finding = _ocsf("events/findings/finding.json")["attributes"]
    classification = _ocsf("includes/classification.json")["attributes"]
    props = schema["properties"]

    assert props["severity_id"]["enum"] == _keys(dictionary["severity_id"]["enum"])
    assert props["severity_id"]["enum"] == [0, 1, 2, 3, 4, 5, 6, 99]
    # status_id: finding.json adds New/In Progress/Suppressed/Resolved to the dictionary's 0/99.
    assert props["status_id"]["enum"] == _keys(dictionary["status_id"]["enum"], finding["status_id"]["enum"])
    activities = _keys(dictionary["activity_id"]["enum"], classification["activity_id"]["enum"],
                       finding["activity_id"]["enum"])
    assert props["activity_id"]["enum"] == activities == [0, 1, 2, 3, 99]

    category_uid = _ocsf("categories.json")["attributes"]["findings"]["uid"]
    class_uid = category_uid * 1000 + _ocsf(CLASS_FILE)["uid"]
    assert (props["category_uid"]["const"], props["class_uid"]["const"]) == (category_uid, class_uid) == (2, 2004)
    assert props["type_uid"]["enum"] == [class_uid * 100 + a for a in activities]
    # The caption siblings are plain strings.
    for enum_attr in ("severity_id", "status_id", "activity_id", "class_uid", "category_uid", "type_uid"):
        assert props[dictionary[enum_attr]["sibling"]]["type"] == "string"


def test_requirements_and_constraints_match_the_ocsf_files(schema):
    defs = schema["$defs"]

    def required_in(rel):
        return sorted(n for n, a in _ocsf(rel)["attributes"].items() if a.get("requirement") == "required")

    assert defs["finding_info"]["required"] == required_in("objects/finding_info.json") == ["title", "uid"]
    assert defs["product"]["required"] == required_in("objects/product.json") == ["vendor_name"]

    def any_of(name):
        return [alt["required"][0] for alt in defs[name]["anyOf"]]

    assert any_of("process") == _ocsf("objects/process.json")["constraints"]["at_least_one"]
    assert any_of("evidences") == _ocsf("objects/evidences.json")["constraints"]["at_least_one"]
    assert any_of("attack") == _ocsf("objects/attack.json")["constraints"]["at_least_one"]
    # resource_details, tactic and technique declare no constraint: they inherit _entity's.
    entity = _ocsf("objects/_entity.json")["constraints"]["at_least_one"]
    for name in ("resource_details", "tactic", "technique"):
        assert "constraints" not in _ocsf(f"objects/{name}.json")
        assert any_of(name) == entity == ["name", "uid"]


def test_profile_attributes_are_left_out(schema):
    top = set(schema["properties"])
    for profile in ("security_control", "host", "cloud"):
        added = set(_ocsf(f"profiles/{profile}.json")["attributes"])
        assert added and not added & top, profile
    container = set(_ocsf("profiles/container.json")["attributes"])
    assert not container & set(schema["$defs"]["process"]["properties"])
    # ... while what the class's own files declare outside profiles is there.
    own = set(_ocsf(CLASS_FILE)["attributes"]) - {"$include"}
    assert own <= top


# ---------------------------------------------------------------- the shipped OCSF copy
def test_shipped_json_files_are_exactly_those_the_generator_reads():
    shipped = {p.relative_to(SCHEMA_DIR).as_posix() for p in SCHEMA_DIR.rglob("*") if p.is_file()}
    assert {f for f in shipped if f.endswith(".json")} == schema_files(CLASS_FILE)
    assert {f for f in shipped if not f.endswith(".json")} == {"SOURCE.md", "LICENSE", "NOTICE"}


def test_shipped_files_are_byte_identical_to_the_tag():
    """Each file's git blob id equals the one the v1.1.0 tree lists (SOURCE.md's manifest)."""
    manifest = dict(
        (path, blob) for blob, path in
        re.findall(r"^([0-9a-f]{40})  (\S+)$", (SCHEMA_DIR / "SOURCE.md").read_text(), re.M)
    )
    shipped = {p.relative_to(SCHEMA_DIR).as_posix(): p for p in SCHEMA_DIR.rglob("*") if p.is_file()}
    assert set(manifest) == set(shipped) - {"SOURCE.md"}
    for path, blob in manifest.items():
        data = shipped[path].read_bytes()
        assert hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() == blob, path


def test_class_schema_returns_a_fresh_schema_each_call(schema):
    """Callers may adapt the schema they get; that must not leak into the next call."""
    first = class_schema(CLASS_FILE)
    first["properties"]["time"]["type"] = "string"
    first["$defs"]["process"]["properties"]["pid"]["type"] = "string"
    assert class_schema(CLASS_FILE) == schema
    assert schema["properties"]["time"]["type"] == "integer"
