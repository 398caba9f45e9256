"""JSON Schema (Draft 2020-12) for an OCSF event class, generated from OCSF's own schema files.

Why this exists: the tests need an oracle for "is this row a valid OCSF 1.1.0 Detection Finding"
that does not come from the code under test, nor from anyone's reading of the OCSF web pages. So
this module reads the schema source files of the OCSF project itself (shipped, byte-identical to
tag v1.1.0 of ocsf/ocsf-schema, in ``schema-1.1.0/`` next to this file) and compiles them the way
the OCSF schema server (github.com/ocsf/ocsf-server, Schema.JsonReader and Schema.Cache as of
early 2024) compiles them:

* ``$include`` in ``attributes`` merges the included file's attributes under the including file's
  own (the including file wins). Attributes that come from a *profile* (a file with
  ``"meta": "profile"``, under ``profiles/``) are marked with that profile, and so are attributes
  that declare ``"profile": "<name>"`` inline (``resource_details.region``); an attribute keeps
  that mark even when the including class refines it (``finding.device``, also added by the
  ``host`` profile), unless it says ``"profile": null``. Rows use no profiles, so every marked
  attribute is left out of the generated schema (sending one fails ``additionalProperties``).
* ``extends`` merges the parent's attributes under the child's, attribute by attribute (the
  child's keys win); every other top-level key, ``constraints`` included, is the child's if it
  has one and the parent's otherwise (so ``tactic`` inherits ``_entity``'s ``at_least_one`` while
  ``process`` replaces it with its own).
* Every attribute is then laid over its ``dictionary.json`` entry (dictionary first, the
  class/object on top), which gives it its ``type``, ``is_array`` and enum. Enums are merged key by
  key, so a class's own ``status_id`` values are *added* to the dictionary's ``0``/``99``.
* The class's ``class_uid`` is ``category_uid * 1000 + uid`` (category from ``categories.json``),
  and ``type_uid`` is ``class_uid * 100 + activity_id``.

The profile files are shipped and read for one reason only: to know which attributes they add,
so those can be left out.

The JSON Schema then says: ``requirement: required`` -> ``required``; ``constraints.at_least_one``
-> ``anyOf`` of single-property ``required``; ``constraints.just_one`` -> ``oneOf``; every OCSF
object and the event itself are closed (``additionalProperties: false``) so a misspelt or
invented field fails, except a *free* object: the generic ``object`` (an object with no
attributes, the type of ``unmapped`` and ``xattributes``), or the ``object_t`` type of later OCSF
versions, which accept any JSON object. ``json_t`` (the type of ``data``) accepts any JSON value.

Only the standard library is used, so the oracle has no dependency in common with the pipeline.
"""
from __future__ import annotations

import json
from pathlib import Path

SCHEMA_DIR = Path(__file__).resolve().parent / "schema-1.1.0"
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"

# The OCSF scalar types that every other *_t type (dictionary "types" section) is derived from,
# through its "type" key (timestamp_t -> long_t, ip_t -> string_t, port_t -> integer_t, ...).
# OCSF's extra restrictions on derived types (regex, max_len, range) are deliberately not
# enforced: only the base type is checked, because a regex translated into a JSON Schema
# "pattern" could reject values OCSF's own tools accept.
_BASE_TYPES = {
    "string_t": {"type": "string"},
    "integer_t": {"type": "integer"},
    "long_t": {"type": "integer"},
    "float_t": {"type": "number"},
    "boolean_t": {"type": "boolean"},
    "json_t": {},  # any JSON value
    "object_t": {"type": "object"},  # free object in later OCSF versions; not a 1.1.0 type
}
_INTEGER_TYPES = {"integer_t", "long_t"}
_FREE_OBJECT = {"type": "object", "description": "Free object: any JSON object is accepted."}


def deep_merge(left: dict, right: dict) -> dict:
    """Merge ``right`` over ``left`` like the OCSF server's ``Utils.deep_merge``.

    Nested dicts are merged recursively; for any other value the right one wins (including
    ``None``, which is how a file says ``"profile": null``). Inputs are not modified.
    """
    out = dict(left)
    for key, value in right.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class _Compiler:
    """Reads one OCSF schema folder and turns classes and objects into JSON Schema pieces."""

    def __init__(self, schema_dir: Path):
        self.dir = Path(schema_dir)
        dictionary = self._read("dictionary.json")
        self.types = dictionary["types"]["attributes"]
        self.dictionary = dictionary["attributes"]
        self.categories = self._read("categories.json")["attributes"]
        # Events and objects are separate name spaces (there is an event "finding" and an
        # object "finding"), each found by its "name" key rather than guessed from a path.
        self.events = self._index("events")
        self.objects = self._index("objects")
        self.defs: dict[str, dict | None] = {}

    # ------------------------------------------------------------------ reading OCSF files
    def _read(self, rel: str) -> dict:
        with open(self.dir / rel, encoding="utf-8") as fh:
            return json.load(fh)

    def _index(self, folder: str) -> dict[str, str]:
        index = {}
        for path in sorted((self.dir / folder).rglob("*.json")):
            rel = path.relative_to(self.dir).as_posix()
            index[self._read(rel)["name"]] = rel
        return index

    def _with_includes(self, rel: str) -> dict:
        """One file with its ``$include`` list resolved, as the server's JsonReader does it."""
        data = self._read(rel)
        attributes = dict(data.get("attributes") or {})
        includes = attributes.pop("$include", [])
        if isinstance(includes, str):
            includes = [includes]
        for include in includes:
            included = self._with_includes(include)
            inc_attrs = included.get("attributes") or {}
            if included.get("meta") == "profile":
                inc_attrs = {k: {**v, "profile": included["name"]} for k, v in inc_attrs.items()}
            # The file's own attributes (and those of earlier includes) win over the include.
            attributes = deep_merge(inc_attrs, attributes)
        for name, attr in attributes.items():
            if isinstance(attr, dict) and "$include" in attr:
                # Attribute-level includes (shared enum files) occur in later OCSF versions but
                # nowhere in what Detection Finding 1.1.0 reaches; fail loudly, never skip.
                raise NotImplementedError(f"{rel}: attribute-level $include on {name!r}")
        data["attributes"] = attributes
        return data

    def _resolved(self, index: dict[str, str], rel: str) -> dict:
        """A class or object with includes and its whole ``extends`` chain merged in."""
        item = self._with_includes(rel)
        parent_name = item.pop("extends", None)
        if parent_name is None:
            return item
        parent = self._resolved(index, index[parent_name])
        attributes = deep_merge(parent["attributes"], item["attributes"])
        merged = {**parent, **item}  # child's constraints/name/caption win, else the parent's
        merged["attributes"] = {k: v for k, v in attributes.items() if v is not None}
        return merged

    def _enriched(self, name: str, attr: dict) -> dict:
        """The class/object attribute laid over its dictionary entry."""
        if name not in self.dictionary:
            raise KeyError(f"attribute {name!r} is not in dictionary.json")
        return deep_merge(self.dictionary[name], attr or {})

    def _base_type(self, type_name: str) -> str:
        while type_name not in _BASE_TYPES:
            type_name = self.types[type_name]["type"]
        return type_name

    # ------------------------------------------------------------------ JSON Schema pieces
    def attribute_schema(self, attr: dict) -> dict:
        """Schema of one (dictionary-enriched) attribute: scalar, enum, object ref, or array."""
        type_name = attr["type"]
        if type_name in self.types or type_name in _BASE_TYPES:
            base = self._base_type(type_name)
            schema = dict(_BASE_TYPES[base])
            if "enum" in attr:
                keys = attr["enum"].keys()
                schema["enum"] = sorted(int(k) for k in keys) if base in _INTEGER_TYPES else sorted(keys)
        else:
            schema = self.object_ref(type_name)  # the dictionary names an OCSF object
        if attr.get("is_array"):
            schema = {"type": "array", "items": schema}
        if attr.get("caption"):
            schema = {"title": attr["caption"], **schema}
        return schema

    def object_ref(self, name: str) -> dict:
        """``$ref`` to ``#/$defs/<name>``, compiling the object the first time it is met."""
        if name not in self.defs:
            self.defs[name] = None  # placeholder: objects refer to themselves (parent_process)
            obj = self._resolved(self.objects, self.objects[name])
            if not obj["attributes"]:
                self.defs[name] = {"title": obj.get("caption", name), **_FREE_OBJECT}
            else:
                self.defs[name] = self.closed_schema(obj)
        return {"$ref": f"#/$defs/{name}"}

    def closed_schema(self, item: dict) -> dict:
        """Schema of a resolved class or object: its non-profile attributes and nothing else."""
        attributes = {
            name: self._enriched(name, attr)
            for name, attr in item["attributes"].items()
            if not (attr or {}).get("profile")
        }
        # An enum attribute's sibling holds its caption ("severity" for "severity_id"). The
        # class/object declares it next to the *_id, and its dictionary type is string_t, so it
        # comes out as a plain string; that it matches the enum's caption is only recommended
        # (OCSF's validator warns, never fails), so no check for that. A sibling the
        # class/object does not declare (related_event.type_name in 1.1.0) is NOT added: OCSF
        # reports it as an unknown attribute.
        schema: dict = {"title": item.get("caption", item.get("name")), "type": "object"}
        schema["properties"] = {n: self.attribute_schema(a) for n, a in sorted(attributes.items())}
        required = sorted(n for n, a in attributes.items() if a.get("requirement") == "required")
        if required:
            schema["required"] = required
        schema["additionalProperties"] = False
        constraints = item.get("constraints") or {}
        unknown = set(constraints) - {"at_least_one", "just_one"}
        if unknown:
            raise NotImplementedError(f"{item.get('name')}: constraints {sorted(unknown)}")
        groups = []
        if "at_least_one" in constraints:
            groups.append({"anyOf": [{"required": [n]} for n in constraints["at_least_one"]]})
        if "just_one" in constraints:
            groups.append({"oneOf": [{"required": [n]} for n in constraints["just_one"]]})
        if len(groups) == 1:
            schema.update(groups[0])
        elif groups:
            schema["allOf"] = groups
        return schema

    def class_schema(self, class_file: str) -> dict:
        event = self._resolved(self.events, class_file)
        attributes = event["attributes"]
        category_uid = self.categories[event["category"]]["uid"]
        class_uid = category_uid * 1000 + event["uid"]
        activity_ids = sorted(
            int(k) for k in self._enriched("activity_id", attributes["activity_id"])["enum"]
        )
        # Class-level constants, replacing the generic enums of includes/classification.json
        # exactly as the server's enrich_class does (class_uid 0 "Base Event" must not survive).
        attributes["class_uid"] = {**attributes["class_uid"], "enum": {str(class_uid): {}}}
        attributes["category_uid"] = {**attributes["category_uid"], "enum": {str(category_uid): {}}}
        attributes["type_uid"] = {
            **attributes["type_uid"],
            "enum": {str(class_uid * 100 + a): {} for a in activity_ids},
        }

        schema = {"$schema": DRAFT_2020_12, **self.closed_schema(event)}
        props = schema["properties"]
        props["class_uid"] = {**props["class_uid"], "const": class_uid}
        props["category_uid"] = {**props["category_uid"], "const": category_uid}
        for key in ("class_uid", "category_uid"):
            props[key].pop("enum")
        # type_uid is *calculated* as class_uid * 100 + activity_id (dictionary.json), so tie
        # the two together, not only check that each is in its own list.
        schema["allOf"] = schema.get("allOf", []) + [
            {
                "if": {"properties": {"activity_id": {"const": a}}, "required": ["activity_id"]},
                "then": {"properties": {"type_uid": {"const": class_uid * 100 + a}}},
            }
            for a in activity_ids
        ]
        schema["$defs"] = dict(sorted(self.defs.items()))
        return schema


def class_schema(class_file: str = "events/findings/detection_finding.json",
                 schema_dir: str | Path = SCHEMA_DIR) -> dict:
    """Draft 2020-12 JSON Schema for the OCSF event class defined in ``class_file``.

    ``class_file`` is relative to ``schema_dir`` (the shipped OCSF 1.1.0 files by default). The
    result is a fresh dict each call; validate with ``jsonschema.Draft202012Validator``.
    """
    return _Compiler(Path(schema_dir)).class_schema(class_file)


def schema_files(class_file: str = "events/findings/detection_finding.json",
                 schema_dir: str | Path = SCHEMA_DIR) -> set[str]:
    """The OCSF files (relative paths) that generating ``class_file`` actually reads.

    Used by the tests to prove the shipped folder holds exactly what is needed.
    """
    compiler = _Compiler(Path(schema_dir))
    seen: set[str] = set()
    read = compiler._read

    def recording_read(rel: str) -> dict:
        seen.add(Path(rel).as_posix())
        return read(rel)

    # Patched after the constructor, whose name index opens every file present.
    compiler._read = recording_read  # type: ignore[method-assign]
    compiler.class_schema(class_file)
    return seen | {"dictionary.json", "categories.json"}
