"""CPU time per `Recommend`, per service, under a fixed open-loop load on a running stack: `recsys bench cpu`.

Wall-clock latency on a shared host moves with whatever else runs; CPU time is charged only to the process
that runs, so it is the steadier figure, and `cores / CPU per request` bounds the requests per second a
machine can ever serve. Each service is found by the port it listens on; its utime + stime (from
/proc/<pid>/stat) is read before and after the load and divided by the answered requests. The load
generator runs in this process, so its own CPU is not counted. Linux only.
"""

from __future__ import annotations

import asyncio
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tools.loadtest import run as load
from tools.stack import DEFAULT_PORTS, SERVICES

_LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp


def listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on `port` (IPv4 or IPv6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == _LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def pid_listening_on(port: int) -> int:
    """The process that listens on `port`; LookupError when none (is the stack running?)."""
    wanted = {f"socket:[{inode}]" for inode in listening_inodes(port)}
    if wanted:
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if any(os.readlink(fd) in wanted for fd in (proc / "fd").iterdir()):
                    return int(proc.name)
            except (PermissionError, FileNotFoundError, ProcessLookupError):
                continue
    raise LookupError(f"nothing of this user listens on port {port}; start the stack first (`make run`)")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def measure(
    ports: Mapping[str, int], rate: float, duration_s: float, users: Sequence[str], count: int = 20
) -> dict[str, Any]:
    """One fixed load: CPU ms per answered request for each service and in total, plus the load's figures."""
    pids = {service: pid_listening_on(ports[service]) for service in SERVICES}
    before = {service: cpu_seconds(pid) for service, pid in pids.items()}
    result = asyncio.run(load(f"127.0.0.1:{ports['gateway']}", rate, duration_s, users, count))
    after = {service: cpu_seconds(pid) for service, pid in pids.items()}
    summary = result.summary()
    answered = max(summary["ok"], 1)
    per_request = {s: round((after[s] - before[s]) * 1000 / answered, 2) for s in SERVICES}
    return {
        "rate": rate,
        "duration_s": duration_s,
        "cpu_ms_per_request": {**per_request, "total": round(sum(per_request.values()), 2)},
        "load": summary,
    }


def run(
    rates: Sequence[float],
    duration_s: float = 30.0,
    count: int = 20,
    users: int = 943,
    warmup_s: float = 5.0,
    ports: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """A short unmeasured warm-up, then one measured load per rate, against the stack on `ports`."""
    ports = dict(ports or DEFAULT_PORTS)
    user_ids = [str(u) for u in range(1, users + 1)]
    if warmup_s > 0:
        asyncio.run(load(f"127.0.0.1:{ports['gateway']}", rates[0], warmup_s, user_ids, count, seed=1))
    return {
        "benchmark": "cpu_per_recommend",
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "count": count,
        "runs": [measure(ports, rate, duration_s, user_ids, count) for rate in rates],
    }
