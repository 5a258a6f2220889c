"""The processes of ``relay serve --workers N``, seen from outside through /proc: which are
alive, how long they have run, and which of their TCP connections go to a given port (so a
stand-in vendor can tell which worker sent a request)."""

from __future__ import annotations

import os
from pathlib import Path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def uptime_over(pid: int, seconds: float) -> bool:
    """Whether process ``pid`` has run ``seconds`` (the main process starts again only a
    worker that ran a while: one failing at once stops the relay)."""
    ticks = os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/stat", "rb") as fh:
        started = int(fh.read().rsplit(b")", 1)[1].split()[19]) / ticks
    with open("/proc/uptime") as fh:
        return float(fh.read().split()[0]) - started >= seconds


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def ports_to(pid: int, remote_port: int) -> set[int]:
    """The local ports of process ``pid``'s TCP connections to ``remote_port`` (IPv4 and
    IPv6 loopback), from /proc/net/tcp*."""
    inodes = _socket_inodes(pid)
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            next(fh)
            for line in fh:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], int(fields[9])
                if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == remote_port:
                    ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports
