"""Independent reading of the contract; shares no code with the pipeline.

Plain-Python oracle for /work/shared/spec/CONTRACT.md sections 3, 4 and 6: it turns a raw folder
of NDJSON alert files into the rows the curated tables must hold, so tests can compare what the
pipeline wrote with what the contract says it should have written.
"""
from __future__ import annotations

import datetime as _dt
import gzip
import json
import math
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

KEYS = ["container.id", "evt.time", "k8s.ns.name", "k8s.pod.name", "proc.cmdline", "proc.pid",
        "cluster_id", "rule_name", "description", "severity", "related_cves"]
RAW = ["raw_" + k for k in KEYS]   # text of each raw field in valid_df (names avoid clashes)
REASONS = ["invalid_utf8", "malformed_json", "not_object", "bad_event_time",
           "missing_cluster_id", "bad_cluster_id", "missing_rule_name"]
_SAFE_BYTES = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
CURATED = ["event_time", "container_id", "namespace", "pod_name", "cmdline", "pid", "rule_name", "tags", "hostname",
           "alert_format", "description", "severity", "related_cves", "dt", "cluster_id"]

# The ATT&CK reference file shipped with the package: the oracle reads it with pandas on its own.
REFERENCE_FILE = Path(__file__).resolve().parent.parent / "plugins" / "runtime_events" / "reference" / "rule_attack_techniques.csv"

_ASCII_WS = " \t\n\r\f\v"
_ISO = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[T ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
                  r"(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:?[0-9]{2})?")
_CVE = re.compile(r"CVE-[0-9]{4}-[0-9]{4,}", re.IGNORECASE | re.ASCII)
_EPOCH = _dt.datetime(1970, 1, 1)
_SEVERITY = {**dict.fromkeys(["critical", "emergency", "alert"], "Critical"),
             **dict.fromkeys(["high", "error"], "High"),
             **dict.fromkeys(["medium", "warning"], "Medium"),
             **dict.fromkeys(["low", "notice"], "Low"),
             **dict.fromkeys(["info", "informational", "debug"], "Info")}


# ---------------------------------------------------------------- input (section 3)
def read_alert_lines(raw_dir) -> list[tuple[str, bytes]]:
    """Every non-blank line of every visible file under raw_dir, in a stable order."""
    out = []
    for root, dirs, files in os.walk(raw_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        for name in sorted(files):
            if name.startswith((".", "_")):
                continue
            path = Path(root, name).resolve()
            data = path.read_bytes()
            if name.endswith(".gz"):
                data = gzip.decompress(data)
            out += [(str(path), line) for line in data.split(b"\n") if line.strip()]
    return out


def _strict_json(line: str):
    def no_constants(name):   # NaN / Infinity are not JSON
        raise ValueError(name)
    return json.loads(line, parse_constant=no_constants)


def _from_epoch_ms(ms: int) -> _dt.datetime | None:
    try:
        return _EPOCH + _dt.timedelta(milliseconds=ms)
    except OverflowError:
        return None


def parse_event_time(value) -> _dt.datetime | None:
    """evt.time -> UTC-naive datetime truncated to ms, or None when it does not parse."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        s = value.strip(_ASCII_WS)
        if re.fullmatch(r"[0-9]+", s):
            value = int(s)
        else:
            m = _ISO.fullmatch(s)
            if not m:
                return None
            y, mo, d, h, mi, sec = (int(g) for g in m.groups()[:6])
            frac, off = m.group(7), m.group(8)
            ms = int((frac[1:] + "00")[:3]) if frac else 0
            try:
                local = _dt.datetime(y, mo, d, h, mi, sec, ms * 1000)  # checks ranges, year>=1
            except ValueError:
                return None
            shift = 0
            if off and off != "Z":
                digits = off[1:].replace(":", "")
                oh, om = int(digits[:2]), int(digits[2:])
                if oh > 23 or om > 59:
                    return None
                shift = (oh * 60 + om) * (1 if off[0] == "+" else -1)
            try:
                return local - _dt.timedelta(minutes=shift)
            except OverflowError:
                return None
    if not isinstance(value, int):
        return None
    if value >= 10**17:
        ms = value // 10**6
    elif value >= 10**14:
        ms = value // 10**3
    elif value >= 10**11:
        ms = value
    else:
        ms = value * 1000
    return _from_epoch_ms(ms)


def parse_pid(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value):
        value = int(value)
    if isinstance(value, int) and -2**31 <= value <= 2**31 - 1:
        return value
    return None


def as_text(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def canonical_severity(s) -> str:
    return _SEVERITY.get(s.strip(_ASCII_WS).lower(), "Unknown") if isinstance(s, str) else "Unknown"


def extract_cves(s) -> list[str]:
    return sorted({m.upper() for m in _CVE.findall(s)}) if isinstance(s, str) else []


def falco_view(obj: dict, fmt: str, cluster_field: str) -> tuple[dict, dict | None]:
    """The alert as Panoptica's eleven keys, and (for a Falco line) its Falco-only values.

    Falco's JSON (as Falcosidekick writes it): rule, priority, time, output, tags, hostname, uuid
    and the event's fields under output_fields. Under 'auto' a line is Falco's when its
    output_fields is an object."""
    fields = obj.get("output_fields")
    if not (fmt == "falco" or (fmt == "auto" and isinstance(fields, dict))):
        return obj, None
    fields = fields if isinstance(fields, dict) else {}
    # the first time that has the form: evt.time a whole number (or its digits), evt.time.iso8601 a
    # date text, else Falco's own `time`
    evt, iso_text = fields.get("evt.time"), fields.get("evt.time.iso8601")
    if (isinstance(evt, int) and not isinstance(evt, bool)) or (isinstance(evt, str) and re.fullmatch(r"-?[0-9]+", evt)):
        when = evt
    elif isinstance(iso_text, str) and re.match(r"[0-9]{4}-", iso_text):
        when = iso_text
    else:
        when = obj.get("time")
    flat = {"container.id": fields.get("container.id"), "evt.time": when, "k8s.ns.name": fields.get("k8s.ns.name"),
            "k8s.pod.name": fields.get("k8s.pod.name"), "proc.cmdline": fields.get("proc.cmdline"),
            "proc.pid": fields.get("proc.pid"), "cluster_id": fields.get(cluster_field), "rule_name": obj.get("rule"),
            "description": obj.get("output"), "severity": obj.get("priority"), "related_cves": obj.get("related_cves")}
    tags = obj.get("tags")
    uuid = obj.get("uuid")
    if isinstance(uuid, bool):
        uuid = "true" if uuid else "false"
    elif isinstance(uuid, int):
        uuid = str(uuid)
    elif not isinstance(uuid, str):
        uuid = None
    extra = {"tags": [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else [],
             "hostname": as_text(obj.get("hostname")), "uuid": uuid}
    return flat, extra


def _check(line: bytes, fmt: str = "panoptica", cluster_field: str = "cluster_id"):
    """-> (reason or None, alert dict or None, event_time or None, Falco values or None)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8", None, None, None
    try:
        obj = _strict_json(text)
    except ValueError:
        return "malformed_json", None, None, None
    if not isinstance(obj, dict):
        return "not_object", None, None, None
    obj, falco = falco_view(obj, fmt, cluster_field)
    reason, obj, ts = _check_alert(obj)
    return reason, obj, ts, falco


def _check_alert(obj: dict):
    ts = parse_event_time(obj.get("evt.time"))
    if ts is None:
        return "bad_event_time", obj, None
    for key in ("cluster_id", "rule_name"):
        if not isinstance(obj.get(key), str) or obj[key] == "":
            return "missing_" + key, obj, ts
        if key == "cluster_id" and not _folder_name_value(obj[key]):
            return "bad_cluster_id", obj, ts
    return None, obj, ts


def _folder_name_value(value: str) -> bool:
    """Contract 8: no control characters, and short enough for a partition folder: at most 240
    bytes with every byte outside A-Z a-z 0-9 . _ - written as %XX."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return False
    return sum(1 if b in _SAFE_BYTES else 3 for b in value.encode("utf-8", "surrogatepass")) <= 240


def _ms(values) -> pd.Series:
    return pd.Series(np.array([np.datetime64(v, "ms") for v in values], dtype="datetime64[ms]"))


def classify(raw_lines, fmt: str = "panoptica", cluster_field: str = "cluster_id"):
    """-> (valid_df, rejects_df); one row per valid alert line / per rejected line."""
    valid, rejects = [], []
    for source, line in raw_lines:
        reason, obj, ts, falco = _check(line, fmt, cluster_field)
        dt = ts.date().isoformat() if ts else None
        if reason:
            rejects.append({"source_file": source, "reason": reason, "dt": dt})
            continue
        raw = {"raw_" + k: as_text(obj.get(k)) for k in KEYS}
        valid.append({**raw, "event_time": ts, "dt": dt, "cluster_id": obj["cluster_id"],
                      "rule_name": obj["rule_name"], "namespace": raw["raw_k8s.ns.name"],
                      "pod_name": raw["raw_k8s.pod.name"], "container_id": raw["raw_container.id"],
                      "cmdline": raw["raw_proc.cmdline"], "pid": parse_pid(obj.get("proc.pid")),
                      "description": raw["raw_description"],
                      "severity": canonical_severity(raw["raw_severity"]),
                      "related_cves": extract_cves(raw["raw_related_cves"]), "source_file": source,
                      "tags": (falco or {}).get("tags", []), "hostname": (falco or {}).get("hostname"),
                      "alert_format": "panoptica" if falco is None else "falco",
                      "uuid": (falco or {}).get("uuid") or None})
    cols = RAW + ["event_time", "dt", "cluster_id", "rule_name", "namespace", "pod_name",
                  "container_id", "cmdline", "pid", "description", "severity", "related_cves",
                  "source_file", "tags", "hostname", "alert_format", "uuid"]
    valid_df = pd.DataFrame(valid, columns=cols, dtype=object)
    valid_df["event_time"] = _ms(valid_df["event_time"])
    valid_df["pid"] = pd.array(list(valid_df["pid"]), dtype="Int32")
    rejects_df = pd.DataFrame(rejects, columns=["source_file", "reason", "dt"], dtype=object)
    return valid_df, rejects_df


# ---------------------------------------------------------------- tables (section 4)
def _duplicated(valid_df: pd.DataFrame) -> list[bool]:
    """True for every valid line that repeats an earlier one: the same eleven raw texts and, for
    a Falco alert, the same Falcosidekick uuid."""
    seen, out = set(), []
    for uuid, *texts in zip(valid_df["uuid"].tolist(), *(valid_df[c].tolist() for c in RAW)):
        key = (*texts, uuid or None)
        out.append(key in seen)
        seen.add(key)
    return out


def _group(rows: list[dict], keys: list[str], aggs: dict) -> pd.DataFrame:
    """Group dict rows by keys (None is a key like any other) and apply aggs to each group."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = [{**dict(zip(keys, k)), **{name: f(g) for name, f in aggs.items()}}
           for k, g in groups.items()]
    return pd.DataFrame(out, columns=keys + list(aggs), dtype=object)


def _pods(g):
    return len({(r["namespace"], r["pod_name"]) for r in g if r["pod_name"] is not None})


def _containers(g):
    return len({r["container_id"] for r in g if r["container_id"] is not None})


def _finish(df: pd.DataFrame, counts=(), times=()) -> pd.DataFrame:
    for c in counts:
        df[c] = df[c].astype("int64")
    for c in times:
        df[c] = _ms(df[c])
    first = [c for c in df.columns if c != "dt"]
    return df[first + ["dt"]]


def expected_tables(raw_dir, days: list[str], fmt: str = "panoptica",
                    cluster_field: str = "cluster_id") -> dict[str, pd.DataFrame]:
    valid_df, _ = classify(read_alert_lines(raw_dir), fmt, cluster_field)
    kept = valid_df[~np.array(_duplicated(valid_df), dtype=bool)]
    cur = kept[kept["dt"].isin(list(days))][CURATED].reset_index(drop=True)
    rows = cur.astype(object).to_dict("records")
    rule = _group(rows, ["dt", "cluster_id", "rule_name", "severity"], {
        "event_count": len, "distinct_pods": _pods, "distinct_containers": _containers,
        "first_seen": lambda g: min(r["event_time"] for r in g),
        "last_seen": lambda g: max(r["event_time"] for r in g)})
    sev = _group(rows, ["dt", "cluster_id", "severity"], {"event_count": len})
    work = _group(rows, ["dt", "cluster_id", "namespace", "pod_name"], {
        "event_count": len,
        "high_severity_count": lambda g: sum(r["severity"] in ("Critical", "High") for r in g),
        "distinct_rules": lambda g: len({r["rule_name"] for r in g})})
    cve_rows = [{**r, "cve_id": c} for r in rows for c in r["related_cves"]]
    cve = _group(cve_rows, ["dt", "cluster_id", "cve_id"],
                 {"event_count": len, "distinct_pods": _pods})
    techniques = attack_techniques()
    by_rule: dict[str, list[dict]] = {}
    for t in techniques.to_dict("records"):
        by_rule.setdefault(t["rule_name"], []).append(t)
    by_id: dict[str, list[dict]] = {}
    for t in all_techniques().to_dict("records"):
        by_id.setdefault(t["technique_id"], []).append(t)

    tactic_of_tag = {t["tactic_tag"]: t["tactic"] for ts in by_id.values() for t in ts}

    def techniques_of(r: dict) -> set[tuple[str, str, str]]:
        """The techniques the alert's tags name, paired as the reference file pairs a rule's tags
        (tactic tags ATT&CK lists for the technique; else all the tactic tags; else ATT&CK's own
        tactics); an alert whose tags name none: its rule's rows."""
        tags = list(r["tags"]) if r["tags"] is not None else []
        tactic_tags = [t for t in tags if t.startswith("mitre_")]
        found = set()
        for tag in dict.fromkeys(tags):
            rows = by_id.get(tag)
            if not rows:
                continue
            listed = [t for t in rows if t["tactic_tag"] in tactic_tags]
            if listed:
                found |= {(t["tactic"], tag, t["technique_name"]) for t in listed}
            elif tactic_tags:
                found |= {(tactic_of_tag[t], tag, rows[0]["technique_name"]) for t in tactic_tags if t in tactic_of_tag}
            else:
                found |= {(t["tactic"], tag, t["technique_name"]) for t in rows}
        return found or {(t["tactic"], t["technique_id"], t["technique_name"]) for t in by_rule.get(r["rule_name"], [])}

    attack_rows = [{**r, "tactic": tactic, "technique_id": tid, "technique_name": name}
                   for r in rows for tactic, tid, name in techniques_of(r)]
    rank = {"Unknown": 0, "Info": 1, "Low": 2, "Medium": 3, "High": 4, "Critical": 5}
    attack = _group(attack_rows, ["dt", "cluster_id", "tactic", "technique_id", "technique_name"], {
        "event_count": len, "distinct_pods": _pods,
        "first_seen": lambda g: min(r["event_time"] for r in g),
        "last_seen": lambda g: max(r["event_time"] for r in g),
        "max_severity": lambda g: max((r["severity"] for r in g), key=rank.__getitem__)})
    return {
        "ocsf_detection_findings": ocsf_findings(rows, techniques_of),
        "runtime_events_parquet": cur,
        "rule_attack_techniques": techniques,
        "attack_techniques": all_techniques(),
        "daily_attack_counts": _finish(attack, ["event_count", "distinct_pods"], ["first_seen", "last_seen"]),
        "daily_rule_counts": _finish(rule, ["event_count", "distinct_pods", "distinct_containers"],
                                     ["first_seen", "last_seen"]),
        "daily_severity_counts": _finish(sev, ["event_count"]),
        "daily_workload_counts": _finish(work, ["event_count", "high_severity_count",
                                                "distinct_rules"]),
        "daily_cve_counts": _finish(cve, ["event_count", "distinct_pods"]),
    }


# ---------------------------------------------------------------- OCSF (issue 13)
# OCSF 1.1.0 Detection Finding, as the README's mapping table states it; the tactic ids are
# MITRE ATT&CK Enterprise's (attack.mitre.org/tactics/enterprise/).
TACTIC_IDS = {"Reconnaissance": "TA0043", "Resource Development": "TA0042", "Initial Access": "TA0001",
              "Execution": "TA0002", "Persistence": "TA0003", "Privilege Escalation": "TA0004",
              "Defense Evasion": "TA0005", "Credential Access": "TA0006", "Discovery": "TA0007",
              "Lateral Movement": "TA0008", "Collection": "TA0009", "Command and Control": "TA0011",
              "Exfiltration": "TA0010", "Impact": "TA0040"}
OCSF_SEVERITY = {"Critical": (5, "Critical"), "High": (4, "High"), "Medium": (3, "Medium"), "Low": (2, "Low"),
                 "Info": (1, "Informational")}
PRODUCTS = {"falco": {"name": "Falco", "vendor_name": "The Falco Project"},
            "panoptica": {"name": "Panoptica", "vendor_name": "Cisco"}}


def _epoch_ms(ts) -> int:
    return (pd.Timestamp(ts) - pd.Timestamp(_EPOCH)) // pd.Timedelta(milliseconds=1)


def ocsf_findings(rows: list[dict], techniques_of) -> pd.DataFrame:
    """One OCSF Detection Finding per curated alert (uids and unmapped.source_file left out: the
    oracle computes neither the event ids nor which file's copy of an alert is kept; the test
    matches them with the curated table's)."""
    out = []
    for r in rows:
        ms = _epoch_ms(r["event_time"])
        severity_id, severity = OCSF_SEVERITY.get(r["severity"], (0, "Unknown"))
        attacks = sorted(techniques_of(r), key=lambda t: (t[1], t[0]))
        resources = [{"type": "kubernetes_cluster", "uid": r["cluster_id"], "name": r["cluster_id"], "namespace": None}]
        if r["namespace"] is not None:
            resources.append({"type": "kubernetes_namespace", "uid": r["namespace"], "name": r["namespace"],
                              "namespace": r["namespace"]})
        if r["pod_name"] is not None:
            resources.append({"type": "kubernetes_pod", "uid": f"{r['namespace'] or ''}/{r['pod_name']}",
                              "name": r["pod_name"], "namespace": r["namespace"]})
        if r["container_id"] is not None:
            resources.append({"type": "container", "uid": r["container_id"], "name": None, "namespace": r["namespace"]})
        unmapped = {"cluster_id": r["cluster_id"], "hostname": r["hostname"],
                    "related_cves": ",".join(r["related_cves"]) or None, "alert_format": r["alert_format"]}
        out.append({
            "activity_id": 1, "activity_name": "Create", "category_uid": 2, "category_name": "Findings",
            "class_uid": 2004, "class_name": "Detection Finding", "type_uid": 200401,
            "type_name": "Detection Finding: Create", "time": ms, "severity_id": severity_id, "severity": severity,
            "status_id": 1, "status": "New",
            "message": r["description"] if r["description"] is not None else r["rule_name"],
            "metadata": {"version": "1.1.0", "product": PRODUCTS[r["alert_format"]], "uid": None,
                         "labels": list(r["tags"])},
            "finding_info": {"uid": None, "title": r["rule_name"], "desc": r["description"],
                             "types": ["Kubernetes Runtime Alert"], "created_time": ms,
                             "attacks": [{"tactic": {"name": tactic, "uid": TACTIC_IDS[tactic]},
                                          "technique": {"name": name, "uid": tid}, "version": "v18.1"}
                                         for tactic, tid, name in attacks]},
            "resources": resources,
            "evidences": None if r["pid"] is None else [{"process": {"pid": int(r["pid"]), "cmd_line": r["cmdline"]}}],
            "unmapped": {k: v for k, v in unmapped.items() if v is not None},
            "dt": r["dt"],
        })
    columns = ["activity_id", "activity_name", "category_uid", "category_name", "class_uid", "class_name",
               "type_uid", "type_name", "time", "severity_id", "severity", "status_id", "status", "message",
               "metadata", "finding_info", "resources", "evidences", "unmapped", "dt"]
    return pd.DataFrame(out, columns=columns, dtype=object)


def ocsf_without_uids(df: pd.DataFrame) -> pd.DataFrame:
    """The table's rows with the uids blanked, its map as a dict (pyarrow gives (key, value)
    pairs in the map's order) without source_file, for comparing with ocsf_findings."""
    df = df.copy()
    df["metadata"] = [{**m, "uid": None} for m in df["metadata"]]
    df["finding_info"] = [{**f, "uid": None} for f in df["finding_info"]]
    df["unmapped"] = [{k: v for k, v in m if k != "source_file"} for m in df["unmapped"]]
    return df


def all_techniques() -> pd.DataFrame:
    """Every ATT&CK technique with each of its tactics, as pandas reads the shipped file."""
    df = pd.read_csv(REFERENCE_FILE.with_name("attack_techniques.csv"), dtype=str, keep_default_na=False)
    assert list(df.columns) == ["technique_id", "technique_name", "tactic", "tactic_tag", "source"]
    return df.astype(object)


def attack_techniques() -> pd.DataFrame:
    """The reference file as pandas reads it: every column text, no value missing."""
    df = pd.read_csv(REFERENCE_FILE, dtype=str, keep_default_na=False)
    assert list(df.columns) == ["rule_name", "tactic", "technique_id", "technique_name", "source"]
    return df.astype(object)


def expected_counts(raw_dir, fmt: str = "panoptica", cluster_field: str = "cluster_id") -> pd.DataFrame:
    """Section 6 per dt (None = day unknown): loaded, duplicate and rejected lines by reason."""
    valid_df, rejects_df = classify(read_alert_lines(raw_dir), fmt, cluster_field)
    kinds = [(d, "duplicate" if dup else "loaded")
             for d, dup in zip(valid_df["dt"], _duplicated(valid_df))]
    kinds += [(d, "rejected_" + r) for d, r in zip(rejects_df["dt"], rejects_df["reason"])]
    counts = Counter(kinds)
    cols = ["loaded", "duplicate"] + ["rejected_" + r for r in REASONS]
    dts = sorted({d for d, _ in kinds}, key=lambda d: (d is None, d or ""))
    out = pd.DataFrame([{"dt": d, **{c: counts[(d, c)] for c in cols}} for d in dts],
                       columns=["dt"] + cols)
    out["dt"] = out["dt"].astype(object).where(out["dt"].notna(), None)
    return out


# ---------------------------------------------------------------- comparison helper
def _norm(v):
    if isinstance(v, (list, tuple, np.ndarray)):
        return tuple(_norm(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _norm(x)) for k, x in v.items()))
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, np.datetime64):
        return None if np.isnat(v) else _norm(pd.Timestamp(v))
    if isinstance(v, _dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(_dt.timezone.utc).replace(tzinfo=None)
        return v.isoformat(sep="T", timespec="milliseconds")
    if isinstance(v, _dt.date):
        return v.isoformat()
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)) or (isinstance(v, float) and v.is_integer()):
        return int(v)
    if isinstance(v, bytes):
        return v.decode("utf-8")
    return v.item() if isinstance(v, np.generic) else v


def canonical(df: pd.DataFrame) -> pd.DataFrame:
    """Source-independent form of a frame: sorted columns and rows, plain Python values. An OCSF
    findings frame is compared without what the oracle does not compute (see ocsf_without_uids)."""
    if {"metadata", "finding_info", "unmapped"} <= set(df.columns) and len(df) and not isinstance(
            df["unmapped"].iloc[0], dict):
        df = ocsf_without_uids(df)
    cols = sorted(df.columns)
    rows = [[_norm(v) for v in r] for r in zip(*(df[c].astype(object).tolist() for c in cols))]
    rows.sort(key=lambda r: [(0, "") if v is None else (1, repr(v)) for v in r])
    return pd.DataFrame(rows, columns=cols, dtype=object).reset_index(drop=True)
