"""Real nats-server processes for the NATS tests: one server, or a JetStream cluster of
three on loopback ports, each with its own store directory, stopped by whoever started
them (the pytest fixtures in conftest.py; `python nats_cluster.py` by hand).

    with NatsCluster(tmp_path, size=3) as cluster:
        cluster.urls            # ["nats://127.0.0.1:PORT", ...]
        cluster.kill(1)         # SIGKILL one server; cluster.start(1) brings it back
        cluster.stop(); cluster.start()   # the whole cluster, stores kept
        with cluster.paused(0): ...       # SIGSTOP: a server that answers nothing

The server binary is $XPROC_NATS_SERVER, else nats-server on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsCluster:
    """`size` nats-server processes with JetStream; with size > 1 they form one cluster.
    `users` ({name: password}) turns authorisation on; `tls` ((cert, key)) makes clients
    speak TLS."""

    def __init__(self, directory: Path, size: int = 3, users: Optional[dict] = None,
                 tls: Optional[tuple] = None, name: str = "xproc-test") -> None:
        self.directory = Path(directory)
        self.size = size
        self.users = users
        self.tls = tls
        self.name = name
        self.binary = os.environ.get("XPROC_NATS_SERVER") or shutil.which("nats-server")
        if not self.binary:
            raise RuntimeError("nats-server not found (./dev.sh setup installs it)")
        self.processes: List[Optional[subprocess.Popen]] = [None] * size
        self._choose_ports()

    def _choose_ports(self) -> None:
        # Ports the kernel had free a moment ago: another program may take one before the
        # server binds it, so the first start() chooses again when a server cannot bind.
        self.client_ports = [free_port() for _ in range(self.size)]
        self.cluster_ports = [free_port() for _ in range(self.size)]
        self.monitor_ports = [free_port() for _ in range(self.size)]
        for i in range(self.size):
            (self.directory / f"n{i}").mkdir(parents=True, exist_ok=True)
            (self.directory / f"n{i}.conf").write_text(self._config(i))

    @property
    def urls(self) -> List[str]:
        scheme = "tls" if self.tls else "nats"
        return [f"{scheme}://127.0.0.1:{port}" for port in self.client_ports]

    def _config(self, i: int) -> str:
        lines = [
            f'server_name: "n{i}"',
            "listen: 127.0.0.1:%d" % self.client_ports[i],
            "http: 127.0.0.1:%d" % self.monitor_ports[i],
            'jetstream { store_dir: "%s" }' % (self.directory / f"n{i}"),
        ]
        if self.size > 1:
            routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.cluster_ports)
            lines.append('cluster { name: "%s", listen: 127.0.0.1:%d, routes: [%s] }'
                         % (self.name, self.cluster_ports[i], routes))
        if self.users:
            users = ", ".join('{user: %s, password: %s}' % (json.dumps(u), json.dumps(p))
                              for u, p in self.users.items())
            lines.append("authorization { users: [%s] }" % users)
        if self.tls:
            cert, key = self.tls
            lines.append('tls { cert_file: "%s", key_file: "%s" }' % (cert, key))
        return "\n".join(lines) + "\n"

    def start(self, i: Optional[int] = None, timeout: float = 30.0) -> None:
        """Starts server i (every server when None) and waits until JetStream is ready."""
        which = range(self.size) if i is None else [i]
        for n in which:
            if self.processes[n] is None or self.processes[n].poll() is not None:
                log = open(self.directory / f"n{n}.log", "ab")
                self.processes[n] = subprocess.Popen(
                    [self.binary, "-c", str(self.directory / f"n{n}.conf")],
                    stdout=log, stderr=subprocess.STDOUT)
                log.close()
        deadline = time.monotonic() + timeout
        for n in which:
            self._wait_healthy(n, deadline)

    def _monitor(self, n: int, path: str) -> dict:
        url = f"http://127.0.0.1:{self.monitor_ports[n]}/{path}"
        with urllib.request.urlopen(url, timeout=1) as reply:
            return json.loads(reply.read())

    def _wait_healthy(self, n: int, deadline: float) -> None:
        # Healthy, and in a cluster a JetStream meta leader known to this server (streams
        # cannot be made before one is elected).
        while True:
            process = self.processes[n]
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"nats-server n{n} exited: {self.log(n)[-2000:]}")
            try:
                if self._monitor(n, "healthz").get("status") == "ok" and (
                        self.size == 1 or self._monitor(n, "jsz").get("meta_cluster", {}).get("leader")):
                    return
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"nats-server n{n} not healthy: {self.log(n)[-2000:]}")
            time.sleep(0.1)

    def kill(self, i: int) -> None:
        """SIGKILL server i: no goodbye to its peers or clients."""
        process = self.processes[i]
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()

    @contextmanager
    def paused(self, i: int) -> Iterator[None]:
        """Server i stopped (SIGSTOP) inside the block: its connections stay open and nothing on
        them is answered, as with a server that hangs. Resumed (SIGCONT) however the block
        ends, then it reads what came meanwhile."""
        process = self.processes[i]
        process.send_signal(signal.SIGSTOP)
        # The signal is sent before every thread of the server has stopped, and one still
        # running would answer what comes next: wait until the kernel reports it stopped.
        _, status = os.waitpid(process.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status), f"nats-server n{i} did not stop on SIGSTOP"
        try:
            yield
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)

    def stop(self, i: Optional[int] = None) -> None:
        """Stops server i (every server when None) as an operator does (SIGTERM)."""
        for n in range(self.size) if i is None else [i]:
            process = self.processes[n]
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def log(self, i: int) -> str:
        path = self.directory / f"n{i}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> "NatsCluster":
        for attempt in range(3):
            try:
                self.start()
                return self
            except RuntimeError as error:
                self.stop()
                if "address already in use" not in str(error) or attempt == 2:
                    raise
                self._choose_ports()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _stop_running(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    # A cluster to try things by hand: `python tests/nats/nats_cluster.py DIR [SIZE]`, stopped
    # by Ctrl-C or SIGTERM (the benchmark's way). Both handlers are set here: a program started
    # in the background of a script inherits SIGINT ignored, and Python then leaves it so.
    signal.signal(signal.SIGINT, _stop_running)
    signal.signal(signal.SIGTERM, _stop_running)
    directory = Path(sys.argv[1] if len(sys.argv) > 1 else "nats-cluster")
    with NatsCluster(directory, size=int(sys.argv[2]) if len(sys.argv) > 2 else 3) as cluster:
        print(",".join(cluster.urls), flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
