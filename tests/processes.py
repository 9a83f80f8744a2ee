"""Long-running services for tests, each in its own session (process group): the Dagster daemon
and a dask scheduler + workers (optionally each worker with a private /tmp). Stopped with SIGTERM
to the group, SIGKILL after a timeout, and
checked afterwards: no process of the session may be left (a daemon started in the background
ignores SIGTERM unless it leads its own group, and its code server and run workers are children).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers import HOST, free_port

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def session_members(sid: int) -> list[int]:
    """Live (non-zombie) processes whose session id is `sid`, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp session ...; comm may contain spaces and parentheses
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[3]) == sid:
            members.append(int(entry.name))
    return members


@dataclass
class Service:
    name: str
    proc: subprocess.Popen
    log: Path
    leftovers: list[int] = field(default_factory=list)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self, *, timeout_s: float = 20.0) -> list[int]:
        """SIGTERM the group, SIGKILL after `timeout_s`; returns pids of the session still alive."""
        sid = self.proc.pid
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(sid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and (self.proc.poll() is None or session_members(sid)):
            time.sleep(0.2)
        if self.proc.poll() is None or session_members(sid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(sid, signal.SIGKILL)
            for pid in session_members(sid):  # members that left the group but not the session
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
            time.sleep(0.5)
        self.leftovers = session_members(sid)
        return self.leftovers


def start_service(name: str, args: list[str], *, env: dict[str, str], workdir: Path,
                  cwd: Path = REPO) -> Service:
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, cwd=cwd, start_new_session=True)
    return Service(name=name, proc=proc, log=log)


@contextlib.contextmanager
def dagster_daemon(*, env: dict[str, str], workdir: Path) -> Iterator[Service]:
    """`dagster-daemon run -w workspace.yaml` (sensors, schedules, run queue, monitoring, retries).

    The daemon starts the code server from workspace.yaml itself; runs launch as its children.
    """
    service = start_service("dagster-daemon", [str(BIN / "dagster-daemon"), "run", "-w",
                                               str(REPO / "workspace.yaml")],
                            env=env, workdir=workdir)
    try:
        yield service
    finally:
        service.stop()


@contextlib.contextmanager
def dagster_webserver(*, env: dict[str, str], workdir: Path,
                      timeout_s: float = 180) -> Iterator[str]:
    """`dagster-webserver -w workspace.yaml` on a free loopback port; yields its URL once
    /server_info answers (log: `workdir`/dagster-webserver.log)."""
    port = free_port()
    service = start_service("dagster-webserver", [str(BIN / "dagster-webserver"), "-h", HOST,
                                                  "-p", str(port), "-w", "workspace.yaml"],
                            env=env, workdir=workdir)
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if not service.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"dagster-webserver did not start:\n{service.tail()}")
            time.sleep(0.5)
        yield url
    finally:
        service.stop()


def _wait_port(port: int, *, service: Service, timeout_s: float) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not service.alive():
            raise RuntimeError(f"{service.name} exited during start-up:\n{service.tail()}")
        with socket.socket() as s:
            if s.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{service.name} did not listen on {HOST}:{port} within {timeout_s} s")


@dataclass
class DaskCluster:
    address: str
    scheduler: Service
    workers: list[Service]

    @property
    def worker(self) -> Service:
        return self.workers[0]


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def private_tmp_command(args: list[str], *, keep: list[Path]) -> list[str]:
    """`args` run in a new mount namespace (`unshare -m`, root only) with an empty private tmpfs
    on /tmp, as a container or pod has: nothing under the host's /tmp is visible to it but the
    `keep` paths that lie there (e.g. a venv or a clone under /tmp), bound back in read-only."""
    tmp = Path("/tmp")
    binds = []
    for path in {p.resolve() for p in keep}:
        if _under(path, tmp):
            rel = path.relative_to(tmp)
            binds.append(f"mkdir -p /tmp/{rel} && mount --bind /mnt/{rel} /tmp/{rel} && "
                         f"mount -o remount,bind,ro /tmp/{rel}")
    script = " && ".join([
        "mount --rbind /tmp /mnt",  # this namespace only: the host /tmp, to bind paths back from
        "mount -t tmpfs -o size=1g,mode=1777 private-tmp /tmp",
        *binds,
        "umount -l /mnt",  # and then not even that
        'exec "$@"',
    ])
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *args]


@contextlib.contextmanager
def dask_cluster(*, workdir: Path, nthreads: int = 2, workers: int = 1, private_tmp: bool = False,
                 env: dict[str, str] | None = None,
                 start_timeout_s: float = 60.0) -> Iterator[DaskCluster]:
    """A `distributed` scheduler and `workers` worker processes (`dask worker` CLI, one process
    of `nthreads` threads each) on free loopback ports, each in its own session, dashboards off.

    `private_tmp`: each worker runs in its own mount namespace with a private tmpfs on /tmp
    (`private_tmp_command`), so it shares no filesystem with this process or the other workers
    (DESIGN.md §5); its worker space is in that /tmp."""
    env = dict(env or os.environ)
    port = free_port()
    address = f"tcp://{HOST}:{port}"
    scheduler = start_service("dask-scheduler", [
        sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", HOST, "--port", str(port),
        "--no-dashboard", "--no-show"], env=env, workdir=workdir)
    started: list[Service] = []
    try:
        _wait_port(port, service=scheduler, timeout_s=start_timeout_s)
        for i in range(workers):
            space = "/tmp/dask-worker-space" if private_tmp else str(workdir / f"worker-space-{i}")
            args = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--host", HOST,
                    "--nworkers", "1", "--nthreads", str(nthreads), "--no-dashboard",
                    "--local-directory", space, "--name", f"test-worker-{i}"]
            if private_tmp:
                keep = [REPO, Path(sys.prefix), Path(sys.executable).resolve().parent.parent,
                        *(Path(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)]
                args = private_tmp_command(args, keep=keep)
            started.append(start_service(f"dask-worker-{i}", args, env=env, workdir=workdir))
        _wait_workers(address, workers, services=started, timeout_s=start_timeout_s)
        yield DaskCluster(address=address, scheduler=scheduler, workers=started)
    finally:
        for service in started:
            service.stop()
        scheduler.stop()


def _wait_workers(address: str, count: int, *, services: list[Service], timeout_s: float) -> None:
    from distributed import Client

    with Client(address, timeout="20s") as client:
        deadline = time.monotonic() + timeout_s
        while len(client.scheduler_info()["workers"]) < count:
            for service in services:
                if not service.alive():
                    raise RuntimeError(f"{service.name} exited during start-up:\n{service.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} dask worker(s) did not join {address}")
            time.sleep(0.2)
