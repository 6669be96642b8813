"""Read a process's CPU time and peak memory from /proc, and find who listens on a port.

Linux only; every function returns ``None`` (rather than raising) when /proc does not answer,
so a benchmark still reports throughput on a machine where it cannot read the server process.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cpu_seconds", "peak_rss_mb", "pid_listening_on", "reset_peak_rss", "rss_mb"]

_PROC = Path("/proc")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` (all its threads) in seconds."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5), 1-based
    return ticks / os.sysconf("SC_CLK_TCK")


def _status_kb(pid: int, name: str) -> int | None:
    try:
        for line in (_PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident set size (VmHWM) of ``pid`` in MiB, over the process's lifetime."""
    kb = _status_kb(pid, "VmHWM")
    return None if kb is None else kb / 1024


def reset_peak_rss(pid: int) -> bool:
    """Reset ``pid``'s VmHWM to its current RSS (``/proc/PID/clear_refs`` ← 5, Linux ≥ 4.0), so
    a later :func:`peak_rss_mb` is the peak of one phase, not of the process's whole life.
    ``False`` when not allowed (another user's process) or not supported."""
    try:
        (_PROC / str(pid) / "clear_refs").write_text("5")
    except OSError:
        return False
    return True


def rss_mb(pid: int) -> float | None:
    """Current resident set size (VmRSS) of ``pid`` in MiB."""
    kb = _status_kb(pid, "VmRSS")
    return None if kb is None else kb / 1024


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (_PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) < 10 or cols[3] != "0A":  # 0A = TCP_LISTEN
                continue
            if int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    return inodes


def pid_listening_on(port: int) -> int | None:
    """The pid holding a listening TCP socket on ``port`` (any address), or ``None``.

    Matches the socket inodes of /proc/net/tcp{,6} against every readable /proc/PID/fd; a
    process of another user is invisible unless we run as root, hence ``None``.
    """
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    me = os.getpid()
    for entry in _PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in targets:
                    return int(entry.name)
            except OSError:
                continue
    return None
