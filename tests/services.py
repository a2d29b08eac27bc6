"""Real servers for tests, started as subprocesses on free loopback ports.

Imported as `services`: tests/ is on sys.path because tests/conftest.py sits there without an __init__.py.
"""

import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (and, closed again, refuses connections)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(ready: Callable[[], bool], process: subprocess.Popen, what: str, timeout: float = 20.0) -> None:
    """Returns once `ready()`; raises if `process` exits first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode} before {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{process.args}: no {what} within {timeout} s")
        time.sleep(0.05)


def answers_http(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).close()
    except urllib.error.HTTPError:
        return True  # an error status is an answer
    except OSError:
        return False
    return True


def accepts_tcp(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 20.0) -> None:
    """Returns once `url` answers any HTTP status; raises if `process` exits or `timeout` seconds pass."""
    wait_for(lambda: answers_http(url), process, f"an answer at {url}", timeout)


@contextmanager
def start_moto_server() -> Iterator[str]:
    """moto's standalone S3 (and other AWS) server; yields its endpoint URL, e.g. http://127.0.0.1:PORT."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # A file, not a pipe: the server logs every request, and a pipe nobody reads would block it when full.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-p", str(port), "-H", "127.0.0.1"], stdout=log, stderr=log
        )
        try:
            try:
                wait_for_http(url, process)
            except (RuntimeError, TimeoutError) as exc:
                log.seek(0)
                raise RuntimeError(f"{exc}; its output:\n{log.read().decode(errors='replace')[-4000:]}") from exc
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def start_redis_server() -> Iterator[str]:
    """A private redis-server (no persistence) on a free port; yields its URL, redis://127.0.0.1:PORT/0.

    Tests get their own server so they never touch, or flush, data in the machine's Redis.
    """
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        process = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=folder,
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_for(lambda: accepts_tcp(port), process, f"a listener on port {port}")
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(timeout=10)


class RedisServer:
    """A private redis-server that keeps its data on disk (append-only file), so it can be stopped and started
    again on the same port with its data, as a restarted production Redis would be."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.folder)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        wait_for(lambda: accepts_tcp(self.port), self.process, f"a listener on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


class TcpProxy:
    """Forwards a local port to another; `cut()` makes it refuse connections and drops open ones (a server
    that went away), `restore()` brings it back on the same port. `sent` holds every byte clients sent."""

    def __init__(self, target_port: int):
        self.target_port, self.port = target_port, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.sent = bytearray()
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def restore(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            # shutdown() first: close() alone wakes neither the accept() nor the recv()s blocked in the proxy's
            # threads, so the port would stay bound and open connections up until their next byte.
            for sock in [self._listener, *self._open]:
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    sock.close()
            self._listener = None
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._open += [client, upstream]
            for source, sink, record in ((client, upstream, self.sent), (upstream, client, None)):
                threading.Thread(target=self._pipe, args=(source, sink, record), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, record: bytearray | None) -> None:
        try:
            while data := source.recv(65536):
                if record is not None:
                    record += data
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
