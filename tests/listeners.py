"""What listens on the network while a test runs: this process and every process it starts.

A thread samples the process tree's sockets (psutil) until the block ends, so servers that live only
for a stage (Ray's GCS and raylet, a vLLM engine, Prefect's test server) are seen too.
"""

from __future__ import annotations

import ipaddress
import threading

import psutil


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is a loopback socket too
    return (mapped or address).is_loopback


class ListenerWatch:
    """`with ListenerWatch() as watch: ...`; then `watch.seen` holds (ip, port, process name) of every
    TCP listener and bound unconnected UDP socket the tree had open at any sample."""

    def __init__(self, interval_s: float = 0.2):
        self.interval_s = interval_s
        self.seen: set[tuple[str, int, str]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def outside_loopback(self) -> list[tuple[str, int, str]]:
        return sorted(s for s in self.seen if not is_loopback(s[0]))

    def sample(self) -> None:
        root = psutil.Process()
        tree = {root.pid: root.name()}
        for child in root.children(recursive=True):
            try:
                tree[child.pid] = child.name()
            except psutil.NoSuchProcess:
                pass
        for conn in psutil.net_connections(kind="inet"):
            listening = conn.status == psutil.CONN_LISTEN or (conn.type == 2 and not conn.raddr)  # SOCK_DGRAM
            if conn.pid in tree and listening and conn.laddr:
                self.seen.add((conn.laddr.ip, conn.laddr.port, tree[conn.pid]))

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "ListenerWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
