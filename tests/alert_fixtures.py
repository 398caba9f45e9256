"""A deliberately hostile, deterministic set of raw alert files (contract section 3).

write_nasty_alerts(raw_dir, days) writes ordinary alerts for every day plus every edge case the
contract names: all evt.time forms, invalid times, duplicates (in a file, across files, across a
.gz and a plain file), odd cluster ids, non-string values, bad pids, severity variants, CVE text,
malformed / non-object / non-UTF-8 lines, blank lines, CRLF, hidden and `_` paths, empty files.
Expected results come from tests/oracle.py, never from this file.
"""
from __future__ import annotations

import datetime as _dt
import gzip
import json
import random
import re
from pathlib import Path

RULES = {
    "Modify Password Files": "critical", "Dump Process Memory": "High",
    "Modify SSH Authorized Keys": "high", "Logs Removal": "Medium",
    "Mount Cgroups Into Container": "CRITICAL",
    "Detect Outbound Connections To Common Miner Pool Ports": "Critical",
    "Terminal shell in container": "notice", "Read sensitive file untrusted": "Warning",
}
SEVERITY_VARIANTS = [" CRITICAL ", "Emergency", "aLeRt", "HIGH", "error\t", "Medium", " warning",
                     "LOW", "Notice", "info", "INFORMATIONAL", "Debug", "", "   ", None,
                     "severe", "crit", "urgent", "Hi gh", "informative"]
CVE_TEXTS = ["CVE-2021-44228", "cve-2021-44228, CVE-2021-44228; Cve-2022-0847",
             "see CVE-2019-5736 and cve-2019-5736 and CVE-2019-573 (too short)",
             "CVE-2021-4422812345 trailingCVE-2020-1234x", "CVE_2021_44228 CVE-21-1234", "none",
             "", None, "CVE-2022-0185\nCVE-2016-5195"]
CLUSTERS = ["prod-eu-1", "prod-us-2", "staging"]
ODD_CLUSTERS = ["prod/eu-1", "a b", "k=v", "c:1", "100%", "ümlaut-集群", "x#y", "q?r", "a%2Fb",
                "it's", "back\\slash", "_under", ".dot", "semi;colon"]
NAMESPACES = ["default", "kube-system", "payments", "web", None]
EPOCH = _dt.datetime(1970, 1, 1)


def _ns(day: str, h=0, mi=0, s=0, sub_ns=0) -> int:
    d = _dt.datetime.fromisoformat(day) + _dt.timedelta(hours=h, minutes=mi, seconds=s)
    return (d - EPOCH) // _dt.timedelta(seconds=1) * 10**9 + sub_ns


def iso(ns: int, offset_min=0, sep="T", digits=3, style="Z") -> str:
    """ns since epoch (UTC) -> local ISO text with the given offset and fraction digits."""
    secs, sub = divmod(ns + offset_min * 60 * 10**9, 10**9)
    d = EPOCH + _dt.timedelta(seconds=secs)
    text = (f"{d.year:04d}-{d.month:02d}-{d.day:02d}{sep}{d.hour:02d}:{d.minute:02d}:"
            f"{d.second:02d}" + (f".{sub:09d}"[: digits + 1] if digits else ""))
    sign, off = ("+" if offset_min >= 0 else "-"), abs(offset_min)
    return text + {"Z": "Z", "none": "", "colon": f"{sign}{off // 60:02d}:{off % 60:02d}",
                   "compact": f"{sign}{off // 60:02d}{off % 60:02d}"}[style]


class _Raw(str):
    """A JSON number literal written verbatim (json.dumps would re-spell 1e3 as 1000.0)."""


def _line(obj, **dump) -> bytes:
    marked = {k: "@raw@" + v if isinstance(v, _Raw) else v for k, v in obj.items()}
    text = json.dumps(marked, ensure_ascii=False, **dump)
    return re.sub(r'"@raw@([^"]*)"', r"\1", text).encode("utf-8")


def _write(path: Path, lines: list[bytes], gz=False, eol=b"\n", final_eol=True):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = eol.join(lines) + (eol if final_eol and lines else b"")
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)


def _ordinary(rng: random.Random, day: str, cluster: str, i: int) -> dict:
    rule = rng.choice(list(RULES))
    ns = rng.choice(NAMESPACES)
    t = _ns(day, rng.randrange(24), rng.randrange(60), rng.randrange(60), rng.randrange(10**9))
    form = rng.randrange(10)
    evt = (t if form < 4 else iso(t, digits=9) if form < 6 else str(t // 10**6) if form == 6
           else iso(t, offset_min=rng.choice([330, -480, 60]), style="colon", digits=6)
           if form == 7 else t // 10**9 if form == 8 else iso(t, sep=" ", digits=0))
    pod = None if rng.random() < 0.06 else f"{ns or 'nons'}-app-{rng.randrange(5)}"
    alert = {
        "container.id": None if rng.random() < 0.06 else f"{rng.randrange(16**12):012x}",
        "evt.time": evt, "k8s.ns.name": ns, "k8s.pod.name": pod,
        "proc.cmdline": rng.choice(["bash -i", "cat /etc/shadow", "rm -rf /var/log/*",
                                    "xmrig --url pool.minexmr.com:4444", "sh -c 'echo hi'"]),
        "proc.pid": rng.choice([rng.randrange(1, 65536), str(rng.randrange(1, 65536))]),
        "cluster_id": cluster, "rule_name": rule,
        "description": f"{rule} detected ({i})",
        "severity": RULES[rule] if rng.random() < 0.8 else rng.choice(SEVERITY_VARIANTS),
        "related_cves": rng.choice(CVE_TEXTS),
    }
    for k in list(alert):                      # sometimes a key is missing altogether
        if k not in ("evt.time", "cluster_id", "rule_name") and rng.random() < 0.02:
            del alert[k]
    return alert


def _base(day: str, cluster="prod-eu-1", rule="Dump Process Memory", **kw) -> dict:
    a = {"container.id": "abc123def456", "evt.time": iso(_ns(day, 12)), "k8s.ns.name": "edge",
         "k8s.pod.name": "edge-pod", "proc.cmdline": "gdb -p 1", "proc.pid": 4242,
         "cluster_id": cluster, "rule_name": rule, "description": "edge case",
         "severity": "High", "related_cves": "CVE-2024-1086"}
    a.update(kw)
    return a


def write_nasty_alerts(raw_dir: Path, days: list[str], per_day: int = 150, seed: int = 7) -> None:
    rng = random.Random(seed)
    raw_dir = Path(raw_dir)
    d0, dl = days[0], days[-1]
    before = (_dt.date.fromisoformat(d0) - _dt.timedelta(days=1)).isoformat()
    after = (_dt.date.fromisoformat(dl) + _dt.timedelta(days=1)).isoformat()

    # -- ordinary alerts, 3 clusters per day, split over plain and gzip files in nested folders
    copies = []
    for day in [before] + list(days) + [after]:
        n = per_day if day in days else 10
        alerts = [_ordinary(rng, day, CLUSTERS[i % 3], i) for i in range(n)]
        lines = [_line(a) for a in alerts]
        half = len(lines) // 2
        folder = raw_dir / "lightspin" / day.replace("-", "/")
        _write(folder / "events-000.json", lines[:half] + lines[:3])        # dups within a file
        _write(folder / "events-001.json.gz", lines[half:], gz=True)
        copies += lines[half:half + 4] + lines[:2]
    _write(raw_dir / "replay" / "copy.json", copies)                        # dups across files
    _write(raw_dir / "replay" / "copy-again.json.gz", copies, gz=True)      # ... and .gz vs plain
    a = _base(d0, description="reordered")
    _write(raw_dir / "replay" / "reordered.json", [
        _line(a), _line(dict(reversed(list(a.items())))),                   # same fields
        _line({**a, "extra": 1, "another": [1, 2]}), _line(a, indent=None, separators=(",", ":")),
        _line({**a, "proc.pid": "4242"}),     # same compact text as 4242 -> duplicate
        _line({**a, "description": None}), _line({k: v for k, v in a.items() if k != "description"}),
        _line({**a, "evt.time": _ns(d0, 12)}),  # same instant, other text -> NOT a duplicate
        _line({**a, "description": "reordered "})])                         # differs -> kept

    # -- every valid evt.time form
    t = _ns(d0, 10, 11, 12, 123456789)
    forms = [iso(t), iso(t, digits=9), iso(t, sep=" "), iso(t, style="none"),
             iso(t, 330, style="colon"), iso(t, -480, style="compact"), iso(t, 330, style="compact"),
             iso(t, -570, style="colon"), iso(t, 0, style="colon"), iso(t, digits=0),
             "  " + iso(t) + " ", "\t" + iso(t, sep=" ") + "\t", t, str(t), t // 10**3,
             str(t // 10**3), t // 10**6, str(t // 10**6), t // 10**9, str(t // 10**9),
             " " + str(t // 10**6) + " ", iso(_ns(d0, 23, 59, 59, 999999999), digits=9),
             iso(_ns(d0, 23, 59, 59, 999600000), digits=4), _ns(d0, 23, 59, 59, 999999999),
             iso(_ns(d0, 0, 0, 0, 0), digits=1), iso(_ns(dl, 23, 59, 59, 0), 840, style="colon"),
             iso(_ns(d0, 0, 0, 0, 500), -720, style="compact", digits=7),
             iso(_ns(d0, 20, 30), 330, style="colon"),       # local next day, UTC day d0
             iso(_ns(dl, 4), -480, style="compact"),          # local previous day, UTC day dl
             iso(_ns(d0, 0, 10), -60, style="colon"),         # local before d0 -> dt = d0
             iso(_ns(d0, 23, 50), 120, style="colon"),        # UTC before d0: outside `days`
             iso(_ns(dl, 23, 59, 59, 999000000), 0, style="compact", digits=5),
             "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z",
             "0001-01-01T05:00:00+04:59", "2024-02-29T12:00:00Z", 0, "0"]
    forms += [iso(t, digits=k) for k in range(1, 10)]
    _write(raw_dir / "edge" / "times.json",
           [_line(_base(d0, description=f"time form {i}") | {"evt.time": f})
            for i, f in enumerate(forms)])

    # -- evt.time that must not parse (rejected: bad_event_time)
    y = d0[:4]
    bad = [d0, f"{d0}T10:00:00+05", f"{d0}T24:00:00Z", f"{y}-02-30T10:00:00Z",
           "0000-01-01T00:00:00Z", "٢٠٢٦-٠٣-٠١T10:00:00Z", "２０２６-03-01T10:00:00Z",
           f"{d0}T1٠:00:00Z", f"{d0}T10:00:00.Z", f"{d0}T10:00:00.1234567890Z", f"{d0}T10:00Z",
           f"{d0}T10:00:60Z", f"{d0}T10:60:00Z", f"{d0}T10:00:00+24:00", f"{d0}T10:00:00+05:60",
           f"{d0}T10:00:00 Z", f"{d0}T10:00:00+5:30", f"{d0}T10:00:00+05:300", f"{d0}T10:00:00UTC",
           d0.replace("-", "") + "T100000Z", f"{d0[:5]}3-1T10:00:00Z", "x",
           "10000-01-01T00:00:00Z", "0001-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00",
           1772409600.5, 1.7724096e9, 1772409600.0, "1772409600.0", "-1772409600", "+1772409600",
           "1e9", "0x10", _Raw("1.7724096e9"), _Raw("17724096E2"), "", "   ", None, True, False, [1772409600], {"s": 1772409600},
           10**30, str(10**30), "١٧٧٢٤٠٩٦٠٠", "1772409600 1", f"{d0}T10:00:00junk"]
    lines = [_line(_base(d0, description=f"bad time {i}") | {"evt.time": v}) for i, v in enumerate(bad)]
    lines.append(_line({k: v for k, v in _base(d0).items() if k != "evt.time"}))
    _write(raw_dir / "edge" / "bad_times.json", lines)

    # -- cluster ids and rule names: odd but valid, or missing / empty / not strings (rejected)
    lines = []
    for day in days:
        for j, c in enumerate(ODD_CLUSTERS):
            for k in range(2):
                lines.append(_line(_base(day, cluster=c, description=f"odd {j}.{k}",
                                         **{"evt.time": iso(_ns(day, 6 + k, j))})))
        lines += [_line(_base(day, rule=r, description="odd rule"))
                  for r in ["Rule with 'quote'", "rule; DROP TABLE x; --", "  spaced  ", "规则"]]
        for field in ("cluster_id", "rule_name"):
            for v in (None, "", 42, True, ["x"], {"a": "b"}, "DROP"):
                obj = _base(day, description=f"{field}={v!r}")
                obj[field] = v
                if v == "DROP":
                    del obj[field]
                lines.append(_line(obj))
    _write(raw_dir / "edge" / "nested" / "deeper" / "clusters.json", lines)

    # -- pids, severities, CVE text, non-string values in string fields, a 200 KB cmdline
    pids = [1234, "1234", "+12", "-7", "007", "-0", 0, -1, "12.5", 12.0, _Raw("1e3"), _Raw("12.50"), _Raw("-0.0"), "abc", "", " 12x",
            2**31 - 1, 2**31, -2**31, -2**31 - 1, str(2**31), "-2147483648", 10**20, str(10**20),
            True, None, [1], {"pid": 1}, "١٢"]
    lines = [_line(_base(d0, description=f"pid {i}", **{"proc.pid": p})) for i, p in enumerate(pids)]
    lines += [_line(_base(days[i % len(days)], description=f"sev {i}", severity=s))
              for i, s in enumerate(SEVERITY_VARIANTS + [3, True, ["high"], {"level": "high"}])]
    lines += [_line(_base(days[i % len(days)], description=f"cve {i}", related_cves=c))
              for i, c in enumerate(CVE_TEXTS + [["cve-2021-3156", "CVE-2021-3156", "x"],
                                                  {"id": "CVE-2023-0001"}, 20210001])]
    odd_values = [123, -4.25, True, False, ["a", "b"], {"k": "v", "n": [1, 2, None]}, [], {},
                  "ümlaut 集群 \"quoted\" \\ back", "tab\tand\nnewline"]
    for i, v in enumerate(odd_values):
        for key in ("container.id", "k8s.ns.name", "k8s.pod.name", "proc.cmdline", "description"):
            if isinstance(v, float) and key != "description":
                continue
            lines.append(_line(_base(d0, **{key: v, "evt.time": iso(_ns(d0, 14, i))})))
    big = " ".join(f"--arg{i}=" + "x" * 90 for i in range(2000))
    lines.append(_line(_base(days[1 % len(days)], **{"proc.cmdline": "python " + big})))
    nulls = [{"k8s.ns.name": None}, {"k8s.pod.name": None}, {"container.id": None},
             {"k8s.ns.name": None, "k8s.pod.name": None, "container.id": None}]
    for day in days:
        for j, n in enumerate(nulls):
            for c in CLUSTERS:
                lines.append(_line(_base(day, cluster=c, description=f"nulls {j}", **n)))
    _write(raw_dir / "edge" / "fields.json", lines)

    # -- malformed, not objects, invalid UTF-8, blank lines
    ok = _line(_base(dl, description="between junk"))
    junk = [b'{"evt.time": ', b"not json", b"{'single': 'quotes'}", b'{"a":1}}', b'{"a":1,}',
            b'{"a":1} // comment', b"NaN", b'{"evt.time": 1772409600, "cluster_id": "c", '
            b'"rule_name": "r", "proc.pid": NaN}', b'{"x": Infinity}', b"{", b"}", b'"just"',
            b"[]", b'[{"evt.time": 1772409600, "cluster_id": "c", "rule_name": "r"}]', b"42",
            b"null", b"true", b'"{\\"cluster_id\\": \\"c\\"}"',
            ok.replace(b"between junk", b"bad \xff byte"), b'{"description": "\xc0\xaf"}',
            ok.replace(b"gdb -p 1", b"surrogate \xed\xa0\x80"), b"\xfe\xff\x00{",
            ok.replace(b"prod-eu-1", b"caf\xe9")]
    blanks = [b"", b"   ", b"\t", b" \t "]
    _write(raw_dir / "edge" / "junk.json",
           [x for pair in zip(junk, (blanks * 10)[: len(junk)]) for x in pair] + [ok, ok])

    # -- line endings, missing final newline, odd names and paths
    crlf = [_line(_base(d, description=f"crlf {d}")) for d in days] + [b"", b"not json either"]
    _write(raw_dir / "edge" / "crlf.json", crlf, eol=b"\r\n")
    _write(raw_dir / "edge" / "a" / "b" / "c" / "no-final-newline.ndjson",
           [_line(_base(d, description="no final eol")) for d in days], final_eol=False)
    _write(raw_dir / "edge" / "no_extension", [_line(_base(dl, description="no extension"))])
    _write(raw_dir / "cluster_id=bogus" / "dt=1999-01-01" / "part.json",
           [_line(_base(dl, cluster="real-cluster", description="hive-looking path"))])
    _write(raw_dir / "edge" / "empty.json", [])
    _write(raw_dir / "edge" / "empty.json.gz", [], gz=True)
    _write(raw_dir / "edge" / "only-blank.json", [b"", b"  ", b""])

    # -- must be ignored: hidden and underscore files and folders (valid alerts inside)
    hidden = [_line(_base(d, cluster="ignored", description="must be ignored")) for d in days]
    for rel in [".ignored.json", "_tmp/alerts.json", "_tmp/sub/alerts.json.gz", "edge/.hidden/x.json",
                "edge/_SUCCESS", "edge/_partial.json", "lightspin/.staging/y.json.gz"]:
        _write(raw_dir / rel, hidden, gz=rel.endswith(".gz"))


# -- Falco's own shape (Falcosidekick's S3 output) ------------------------------------------------
FALCO_PRIORITIES = ["Emergency", "Alert", "Critical", "Error", "Warning", "Notice", "Informational",
                    "Debug", "Info", "informational", "", None, "Loud"]
FALCO_RULES = {
    "Terminal shell in container": ["container", "shell", "mitre_execution", "T1059"],
    "Adding ssh keys to authorized_keys": ["host", "container", "mitre_persistence", "T1098.004"],
    "Clear Log Activities": ["host", "container", "filesystem", "mitre_defense_evasion", "T1070"],
    "Write below binary dir": ["host", "container", "filesystem", "mitre_persistence"],
    "A rule nobody maps": ["custom"],
}


def _falco(day: str, cluster: str | None, rule: str, i: int, rng: random.Random, cluster_field="cluster_id") -> dict:
    t = _ns(day, rng.randrange(24), rng.randrange(60), rng.randrange(60), rng.randrange(10**9))
    ns = rng.choice(NAMESPACES)
    fields = {"container.id": f"{rng.randrange(16**12):012x}", "evt.time": t, "k8s.ns.name": ns,
              "k8s.pod.name": None if ns is None else f"{ns}-app-{rng.randrange(4)}",
              "proc.cmdline": rng.choice(["sh -c clear; (bash || ash || sh)", "touch /bin/hack", None]),
              "proc.name": "sh", "proc.pid": rng.choice([rng.randrange(1, 65536), None]), "user.loginuid": -1}
    if cluster is not None:
        fields[cluster_field] = cluster  # Falcosidekick's customfields land in output_fields
    return {"uuid": f"{rng.getrandbits(128):032x}", "output": f"{iso(t, digits=9)[11:-1]}: {rule} ({i})",
            "priority": rng.choice(FALCO_PRIORITIES[:8]) if rng.random() < 0.85 else rng.choice(FALCO_PRIORITIES),
            "rule": rule, "time": iso(t, digits=9), "output_fields": dict(sorted(fields.items())),
            "source": "syscall", "tags": sorted(FALCO_RULES.get(rule, [])), "hostname": f"node-{rng.randrange(3)}"}


def write_falco_alerts(raw_dir: Path, days: list[str], per_day: int = 60, seed: int = 11,
                       cluster_field: str = "cluster_id", layout: str = "{yyyy}-{MM}-{dd}/") -> None:
    """Falcosidekick's S3 output: one alert a file, no final newline, under <YYYY-MM-DD>/ of its
    arrival, plus the edge cases of Falco's shape: evt.time as nanoseconds, as ISO text (the
    evt.time.iso8601 field) or missing (then `time`), null k8s fields, a missing cluster field,
    a redelivered alert (same uuid, another file), alerts without uuid, tags that are not
    strings, a numeric hostname, output_fields that is not an object."""
    rng = random.Random(seed)
    raw_dir = Path(raw_dir)
    n = 0

    def put(day: str, alert) -> None:
        nonlocal n
        n += 1
        folder = layout.replace("{yyyy}", day[:4]).replace("{MM}", day[5:7]).replace("{dd}", day[8:10])
        text = alert if isinstance(alert, bytes) else _line(alert, separators=(",", ":"))
        _write(raw_dir / folder / f"{day}T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}.{n:09d}Z.json",
               [text], final_eol=False)

    for day in days:
        for i in range(per_day):
            put(day, _falco(day, rng.choice(CLUSTERS), rng.choice(list(FALCO_RULES)), i, rng, cluster_field))
    d = days[-1]
    again = _falco(d, "prod-eu-1", "Terminal shell in container", 900, rng, cluster_field)
    put(d, again)
    put(d, again)                                      # redelivered: one row
    no_uuid = {k: v for k, v in _falco(d, "staging", "Clear Log Activities", 901, rng, cluster_field).items()
               if k != "uuid"}
    put(d, no_uuid)
    put(d, no_uuid)                                    # no uuid: equal alerts are one row
    iso_time = _falco(d, "prod-us-2", "Terminal shell in container", 902, rng, cluster_field)
    iso_time["output_fields"]["evt.time.iso8601"] = iso(iso_time["output_fields"].pop("evt.time"), digits=9)
    put(d, iso_time)
    only_time = _falco(d, "prod-us-2", "Write below binary dir", 903, rng, cluster_field)
    only_time["output_fields"]["evt.time"] = None      # Falco's own time field instead
    put(d, only_time)
    put(d, _falco(d, None, "Terminal shell in container", 904, rng, cluster_field))   # no cluster: rejected
    odd_tags = _falco(d, "staging", "Adding ssh keys to authorized_keys", 905, rng, cluster_field)
    odd_tags["tags"] = ["T1098.004", 7, {"x": 1}, None, "mitre_persistence"]
    odd_tags["hostname"] = 12345
    put(d, odd_tags)
    shared = _falco(d, "prod-eu-1", "Clear Log Activities", 908, rng, cluster_field)
    other = _falco(days[0], "staging", "Write below binary dir", 909, rng, cluster_field)
    other["uuid"] = shared["uuid"]                     # two alerts that share a uuid: two rows
    put(d, shared)
    put(days[0], other)
    garbled = _falco(d, "prod-us-2", "Terminal shell in container", 910, rng, cluster_field)
    garbled["output_fields"]["evt.time"] = "soon"      # not a time: Falco's `time` is used
    put(d, garbled)
    own_rule = _falco(d, "tagged-only", "A rule nobody maps", 907, rng, cluster_field)
    own_rule["tags"] = ["custom", "T1611", "mitre_privilege_escalation", "T1059"]  # T1059 without its tactic
    put(d, own_rule)                                   # mapped by its tags alone: Escape to Host
    no_fields = _falco(d, "staging", "Terminal shell in container", 906, rng, cluster_field)
    no_fields["output_fields"] = None                  # not Falco's shape after all
    put(d, no_fields)
    put(d, b'{"rule": "Terminal shell in container", "output_fields": {"evt.time": "soon"')  # cut off
