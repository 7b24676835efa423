"""Processes as the host sees them in /proc: memory (resident and peak), CPU time per process
and per thread, parents, children, and which process serves a unix socket. What a platform
session needs to measure the footprint of what it launched (``footprint.py`` summarises).

Every reader returns None (or an empty value) for a process that is gone or unreadable; none
raises. CPU time comes from ``stat`` (user + system, in clock ticks: 10 ms here) for
processes and threads alike, so that a process's time less some of its threads' is exact to
a tick; a process's time includes its threads that have ended (QEMU's I/O pool comes and
goes).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

PROC = Path("/proc")
_TICK_S = 1.0 / (os.sysconf("SC_CLK_TCK") or 100)


@dataclass(frozen=True)
class ProcessMemory:
    """``/proc/<pid>/status``: resident now and at its peak, and what the resident set is
    made of (kB)."""

    rss_kb: int
    peak_rss_kb: int  # VmHWM: the high-water mark since the process started
    anon_kb: int | None = None
    file_kb: int | None = None
    shmem_kb: int | None = None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, ValueError):
        return None


def memory(pid: int, proc: Path = PROC) -> ProcessMemory | None:
    text = _read(proc / str(pid) / "status")
    if not text:
        return None
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem") and parts and parts[0].isdigit():
            values[key] = int(parts[0])
    if "VmRSS" not in values:  # a zombie or a kernel thread
        return None
    return ProcessMemory(values["VmRSS"], values.get("VmHWM", values["VmRSS"]), values.get("RssAnon"),
                         values.get("RssFile"), values.get("RssShmem"))


def _stat_fields(text: str) -> list[str]:
    """The fields of a stat line after the command (which may hold spaces and parentheses)."""
    return text.rsplit(")", 1)[-1].split()


def thread_cpu_s(pid: int, tid: int, proc: Path = PROC) -> float | None:
    """CPU seconds thread ``tid`` of ``pid`` has used (user + system, clock ticks: the same
    clock as :func:`process_cpu_s`, so the two can be subtracted)."""
    stat = _read(proc / str(pid) / "task" / str(tid) / "stat")
    if not stat:
        return None
    fields = _stat_fields(stat)
    try:
        return (int(fields[11]) + int(fields[12])) * _TICK_S  # utime, stime (fields 14, 15)
    except (IndexError, ValueError):
        return None


def threads(pid: int, proc: Path = PROC) -> list[int]:
    try:
        return sorted(int(t) for t in os.listdir(proc / str(pid) / "task") if t.isdigit())
    except OSError:
        return []


def threads_cpu_s(pid: int, proc: Path = PROC) -> dict[int, float]:
    """CPU seconds of every live thread of ``pid`` (threads that ended are not counted)."""
    out: dict[int, float] = {}
    for tid in threads(pid, proc):
        value = thread_cpu_s(pid, tid, proc)
        if value is not None:
            out[tid] = value
    return out


def process_cpu_s(pid: int, proc: Path = PROC) -> float | None:
    """CPU seconds the whole process has used: every thread, those that ended included
    (``/proc/<pid>/stat``; clock ticks)."""
    stat = _read(proc / str(pid) / "stat")
    if not stat:
        return None
    fields = _stat_fields(stat)
    try:
        return (int(fields[11]) + int(fields[12])) * _TICK_S
    except (IndexError, ValueError):
        return None


def parent(pid: int, proc: Path = PROC) -> int | None:
    stat = _read(proc / str(pid) / "stat")
    if not stat:
        return None
    try:
        return int(_stat_fields(stat)[1])  # field 4: ppid
    except (IndexError, ValueError):
        return None


def command_name(pid: int, proc: Path = PROC) -> str | None:
    text = _read(proc / str(pid) / "comm")
    return text.strip() if text else None


def children(pid: int, proc: Path = PROC) -> list[int]:
    """Direct children of ``pid`` (every thread's children list)."""
    out: set[int] = set()
    for tid in threads(pid, proc):
        text = _read(proc / str(pid) / "task" / str(tid) / "children") or ""
        out.update(int(c) for c in text.split() if c.isdigit())
    return sorted(out)


def _all_pids(proc: Path = PROC) -> Iterable[int]:
    try:
        names = os.listdir(proc)
    except OSError:
        return []
    return (int(n) for n in names if n.isdigit())


def unix_socket_server(path: str, proc: Path = PROC) -> int | None:
    """The process that listens on the unix socket ``path`` (e.g. dockerd's), found from
    /proc/net/unix (the socket's inode) and every process's open descriptors."""
    text = _read(proc / "net" / "unix") or ""
    names = {path, os.path.realpath(path)}
    if path.startswith("/run/"):
        names.add("/var" + path)
    inodes: set[str] = set()
    for line in text.splitlines()[1:]:
        parts = line.split()
        # a listening socket: state 01 (unconnected), flags 00010000 (__SO_ACCEPTCON)
        if len(parts) >= 8 and parts[7] in names and parts[3] == "00010000":
            inodes.add(parts[6])
    if not inodes:
        return None
    wanted = {f"socket:[{i}]" for i in inodes}
    for pid in _all_pids(proc):
        fd_dir = proc / str(pid) / "fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd_dir / fd) in wanted:
                    return pid
            except OSError:
                continue
    return None
