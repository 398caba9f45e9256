#!/usr/bin/env python3
"""Build plugins/runtime_events/reference/rule_attack_techniques.csv from Falco's rules and MITRE's data.

Inputs are two local git repositories (a clone or a bare git dir, read with `git show`):
  FALCO_GIT  a clone of https://github.com/falcosecurity/rules
  CTI_GIT    a clone of https://github.com/mitre/cti
Usage: FALCO_GIT=... CTI_GIT=... .venv/bin/python scripts/attack-reference.py [OUT_CSV]
Also writes attack_techniques.csv beside it: every ATT&CK Enterprise technique with each of its
tactics. The rows, their sources and the pairing rule are described in reference/SOURCES.md.
"""
import csv
import json
import os
import re
import subprocess
import sys

import yaml

FALCO_GIT = os.environ.get("FALCO_GIT") or sys.exit("set FALCO_GIT to a clone of falcosecurity/rules")
CTI_GIT = os.environ.get("CTI_GIT") or sys.exit("set CTI_GIT to a clone of mitre/cti")
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "plugins", "runtime_events", "reference",
    "rule_attack_techniques.csv")

RULE_FILES = ["rules/falco_rules.yaml", "rules/falco-incubating_rules.yaml",
              "rules/falco-sandbox_rules.yaml", "archive/falco-deprecated_rules.yaml"]
TECH_RE = re.compile(r"T\d{4}(\.\d{3})?")
BLOB = "https://github.com/falcosecurity/rules/blob/{commit}/{path}"

# Simulator / Panoptica (Lightspin light-k8s-attack-simulations) rule names that exist in no
# Falco rules version: name -> closely matching Falco rule whose tags are used.
SIMILAR = {
    "Modify Password Files": "Write below etc",
    "Modify SSH Authorized Keys": "Adding ssh keys to authorized_keys",
    "Logs Removal": "Clear Log Activities",
    "Mount Cgroups Into Container": "Detect release_agent File Container Escapes",
    "Detect Outbound Connections To Common Miner Pool Ports":
        "Detect outbound connections to common miner pool ports",
}
# Names with no Falco counterpart whose public description is MITRE's own technique text:
# name -> technique id (tactics = the technique's ATT&CK tactics, source = MITRE page).
MITRE_DOCUMENTED = {
    # Lightspin README: "Gathering credentials from information stored in the Proc filesystem",
    # the T1003.007 description in ATT&CK v7-v12 ("...gather credentials from information
    # stored in the Proc filesystem or /proc").
    "Dump Process Memory": "T1003.007",
}
UNMAPPED = ["Falco internal: syscall event drop"]  # no rule file, maps to nothing


def git(gitdir, *args):
    return subprocess.run(["git", "--git-dir=" + gitdir, *args], capture_output=True,
                          text=True, check=True).stdout


def load_attack():
    """technique id -> (display name, [tactic shortnames]); tactic shortname -> name."""
    tactics, raw = {}, {}
    for sub in ("x-mitre-tactic", "attack-pattern"):
        for f in git(CTI_GIT, "ls-tree", "-r", "--name-only", "HEAD",
                     f"enterprise-attack/{sub}/").split():
            for o in json.loads(git(CTI_GIT, "show", "HEAD:" + f))["objects"]:
                if o.get("revoked") or o.get("x_mitre_deprecated"):
                    continue
                ext = [r["external_id"] for r in o.get("external_references", [])
                       if r.get("source_name") == "mitre-attack"]
                if o["type"] == "x-mitre-tactic":
                    tactics[o["x_mitre_shortname"]] = o["name"]
                elif o["type"] == "attack-pattern" and ext:
                    phases = [k["phase_name"] for k in o.get("kill_chain_phases", [])
                              if k["kill_chain_name"] == "mitre-attack"]
                    raw[ext[0]] = (o["name"], phases)
    techs = {}
    for tid, (name, phases) in raw.items():
        if "." in tid:
            parent = raw.get(tid.split(".")[0])
            if not parent:
                continue
            name = f"{parent[0]}: {name}"
        techs[tid] = (name, phases)
    return techs, tactics


def rules_in(doc):
    out = {}
    for it in doc or []:
        if isinstance(it, dict) and "rule" in it and it.get("tags"):
            out.setdefault(it["rule"], [])
            out[it["rule"]] += [str(t) for t in it["tags"] if str(t) not in out[it["rule"]]]
    return out


def main():
    techs, tactics = load_attack()
    head = git(FALCO_GIT, "rev-parse", "HEAD").strip()
    rules = {}  # name -> (tags, source url)
    all_current = set()
    for path in RULE_FILES:
        doc = yaml.safe_load(git(FALCO_GIT, "show", f"HEAD:{path}"))
        all_current |= {it["rule"] for it in doc or [] if isinstance(it, dict) and "rule" in it}
        for name, tags in rules_in(doc).items():
            rules.setdefault(name, (tags, BLOB.format(commit=head, path=path)))
    # Rules that are gone from the current files: newest tagged version on main's history.
    history, seen = [], set()
    for line in git(FALCO_GIT, "log", "HEAD", "--format=%H", "--", "rules/").split():
        for path in git(FALCO_GIT, "ls-tree", "-r", "--name-only", line, "rules/").split():
            if not path.endswith((".yaml", ".yml")):
                continue
            try:
                doc = yaml.safe_load(git(FALCO_GIT, "show", f"{line}:{path}"))
            except Exception:
                continue
            if not isinstance(doc, list):
                continue
            for name, tags in rules_in(doc).items():
                if name in all_current or name in seen:
                    continue
                seen.add(name)  # newest version on main decides
                if any(TECH_RE.fullmatch(t) for t in tags):
                    rules[name] = (tags, BLOB.format(commit=line, path=path))
                    history.append(name)

    rows, claim_only, omitted = set(), [], []

    def emit(rule_name, tags, source):
        tacs = [t[len("mitre_"):].replace("_", "-") for t in tags if t.startswith("mitre_")]
        for t in tacs:
            if t not in tactics:
                print(f"WARN unknown tactic tag mitre_{t} on {rule_name!r}", file=sys.stderr)
        tacs = [t for t in tacs if t in tactics]
        for tid in [t for t in tags if TECH_RE.fullmatch(t)]:
            if tid not in techs:
                omitted.append((rule_name, tid))
                continue
            name, phases = techs[tid]
            pair = [t for t in tacs if t in phases]
            if not pair and tacs:
                pair = tacs
                claim_only.append((rule_name, [tactics[t] for t in tacs], tid))
            elif not pair:
                pair = phases
            for t in pair:
                rows.add((rule_name, tactics[t], tid, name, source))

    for name, (tags, source) in rules.items():
        emit(name, tags, source)
    for sim, falco_name in SIMILAR.items():
        tags, source = rules[falco_name]
        emit(sim, tags, source)
    for sim, tid in MITRE_DOCUMENTED.items():
        name, phases = techs[tid]
        for t in phases:
            rows.add((sim, tactics[t], tid, name,
                      f"https://attack.mitre.org/techniques/{tid.replace('.', '/')}/"))

    keys = {r[:3] for r in rows}
    assert len(keys) == len(rows), "conflicting rows for one (rule, tactic, technique)"
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["rule_name", "tactic", "technique_id", "technique_name", "source"])
        w.writerows(sorted(rows, key=lambda r: r[:3]))

    # Every Enterprise technique with each of its tactics: names for techniques that alerts' own
    # tags name (Falco's tags: T#### and mitre_<tactic>).
    techniques_out = os.path.join(os.path.dirname(OUT), "attack_techniques.csv")
    with open(techniques_out, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["technique_id", "technique_name", "tactic", "tactic_tag", "source"])
        w.writerows(sorted(
            (tid, name, tactics[phase], "mitre_" + phase.replace("-", "_"),
             f"https://attack.mitre.org/techniques/{tid.replace('.', '/')}/")
            for tid, (name, phases) in techs.items() for phase in phases if phase in tactics))

    print(f"falco commit {head}")
    print(f"cti commit {git(CTI_GIT, 'log', '-1', '--format=%H %s').strip()}")
    print(f"rules with tags read: {len(rules)} (from history: {history})")
    print(f"rules in CSV: {len({r[0] for r in rows})}, rows: {len(rows)}")
    print("no-technique rules:", sorted(n for n, (t, _) in rules.items()
                                         if not any(TECH_RE.fullmatch(x) for x in t)))
    print("claim-only:", *claim_only, sep="\n  ")
    print("omitted techniques:", omitted)


if __name__ == "__main__":
    main()
