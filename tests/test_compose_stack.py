"""The Docker stack executed, without Docker: every service of docker-compose.yml that runs the
pipeline image (code server, webserver, daemon, dask scheduler and worker, and any service added
later) starts as a process of the installed wheel (tests/installed.py, the venv the wheel test
uses), with exactly the command and environment Compose gives it, interpolated from .env.example
with test values. Then the buckets are created as `createbuckets` does, a batch is uploaded, and
the sensor, the queued run, the dask cluster and the report must work as in production.

What stands in for Docker, and how (`stack_processes` derives it all from the files):
- Images: the pipeline image is the installed venv (the Dockerfile's /opt/venv). The Dockerfile's
  runtime ENV is applied (PATH with the venv first, PYTHONUNBUFFERED, DAGSTER_HOME), and the files
  its runtime stage COPYs (dagster.yaml into DAGSTER_HOME, docker/workspace.yaml into WORKDIR) are
  copied into each process's own root folder. Container paths become paths under that root: each
  process has its own filesystem (root), working directory (WORKDIR), HOME and TMPDIR.
- Named volumes: one folder per volume, linked into the root of each service that mounts it and
  of no other (dagster-storage: user-code, webserver, daemon). Nothing else is shared, and that
  is enforced: each process runs in a mount namespace of its own (`unshare --mount`) in which the
  other services' roots and the volumes it does not mount are empty, so a path one process hands
  another (a scratch file, say) does not exist there, exactly as between containers.
- Network: in Docker each container has its own loopback and reaches the others by service name.
  Here all share 127.0.0.1, so each (service, port) gets an address: postgres:5432 -> the test
  Postgres (a throwaway database), minio:9000 -> a SeaweedFS S3 server, and every port a started
  service listens on (its `-p`/`--port` option) -> a free loopback port. Rewritten consistently:
  `service:port` in any string (URLs), `X_HOST=service` + `X_PORT=port` pairs, grpc_server
  host/port in workspace.yaml, a service's own listen options (`-h 0.0.0.0` -> 127.0.0.1, so the
  stack is not exposed on this shared machine) and `localhost:port` in its own healthcheck. A
  reference to a host no service provides is an error, as it would be in Docker.
- depends_on: services start in dependency order; `service_healthy` runs the dependency's own
  healthcheck command (rewritten as above) until it passes. postgres, minio and createbuckets
  are provided by the test before any pipeline service starts. init: true -> each process leads
  its own session and its whole process group is killed at teardown.

Known (issue 11): the stack's dask workers share no filesystem with user-code, so a raster
engine that stages rasters in a local scratch folder fails here with FileNotFoundError, exactly
as the containers would.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.sample import write_sample_batch
from tests.compose import (
    DOCKERFILE,
    REPO,
    command,
    dockerfile_instructions,
    environment,
    load_compose,
    load_env_example,
    option,
    resolve,
    argv as instruction_argv,
)
from tests.installed import InstalledVenv
from tests.pg import PgDatabase
from tests.processes import Service, session_members, start_service
from tests.servers import HOST, S3Server, free_ports, unique_bucket


START_TIMEOUT_S = 180
REPORT_TIMEOUT_S = 300
PORT_OPTIONS = ("-p", "--port")
HOST_OPTIONS = ("-h", "--host")
ANY_ADDRESS = ("0.0.0.0", "::", "")
# Services the test provides itself (stand-ins, or done in-process), never started as processes.
PROVIDED = {"postgres", "minio", "createbuckets"}
API_TOKEN = "stack-test-token"


class StackError(ValueError):
    """The compose file cannot run as written (names the service and what is wrong)."""


@dataclass
class ProcessSpec:
    service: str
    argv: list[str]
    env: dict[str, str]
    root: Path  # the container's filesystem: container path /x is root/x
    cwd: Path
    copies: dict[Path, str]  # file under root -> its content
    volumes: dict[str, Path]  # named volume -> mount point under root
    healthcheck: list[str] | None
    depends_on: dict[str, str]


@dataclass
class Stack:
    processes: dict[str, ProcessSpec]
    addresses: dict[tuple[str, int], tuple[str, int]]
    volumes: dict[str, Path]
    env: dict[str, str]  # the interpolation values (.env)
    services: dict[str, Any] = field(default_factory=dict)  # interpolated compose services


# ------------------------------------------------------------------------ deriving the processes
def pipeline_services(compose: dict[str, Any]) -> list[str]:
    """Services built from the repository's Dockerfile: those run pipeline code."""
    return [n for n, s in compose["services"].items() if "build" in s and n not in PROVIDED]


def rewrite_references(text: str, *, addresses: dict[tuple[str, int], tuple[str, int]],
                       hosts: set[str], where: str) -> str:
    """`service:port` -> its loopback address; a service host without a mapped port is an error."""
    names = "|".join(sorted((re.escape(h) for h in hosts), key=len, reverse=True))

    def one(m: re.Match[str]) -> str:
        key = (m["host"], int(m["port"]))
        if key not in addresses:
            raise StackError(f"{where}: {m['host']}:{m['port']} is no port a service listens on")
        host, port = addresses[key]
        return f"{host}:{port}"

    text = re.sub(rf"(?<![\w.-])(?P<host>{names}):(?P<port>\d+)\b", one, text)
    # A dotless host in a URL is a name only Docker's network could resolve: a typo or a missing
    # service (external names like s3.amazonaws.com have dots).
    for m in re.finditer(r"://(?P<host>[A-Za-z][\w-]*)(?=[:/]|$)", text):
        if m["host"] != "localhost":
            raise StackError(f"{where}: {m['host']!r} in {text!r} is no service of the stack")
    return text


def env_listen_ports(env: dict[str, str]) -> list[int]:
    """Ports a service is told to listen on by its environment (`X_HOST=0.0.0.0`, `X_PORT=p`)."""
    return [int(env[k[:-len("_HOST")] + "_PORT"]) for k, v in env.items()
            if k.endswith("_HOST") and v in ANY_ADDRESS and k[:-len("_HOST")] + "_PORT" in env]


def rewrite_env(env: dict[str, str], *, addresses: dict[tuple[str, int], tuple[str, int]],
                hosts: set[str], service: str, where: str) -> dict[str, str]:
    out = {k: rewrite_references(v, addresses=addresses, hosts=hosts, where=f"{where} {k}")
           for k, v in env.items()}
    for key, value in env.items():
        if key.endswith("_HOST") and value in ANY_ADDRESS:  # its own listen address
            port_key = key[:-len("_HOST")] + "_PORT"
            out[key] = HOST
            out[port_key] = str(addresses[(service, int(env[port_key]))][1])
        elif key.endswith("_HOST") and value in hosts:
            port_key = key[:-len("_HOST")] + "_PORT"
            if port_key not in env or (value, int(env[port_key])) not in addresses:
                raise StackError(f"{where}: {key}={value} with {port_key}={env.get(port_key)!r} "
                                 "is no port a service listens on")
            out[key], port = addresses[(value, int(env[port_key]))]
            out[port_key] = str(port)
    return out


def rewrite_own_listen(args: list[str], *, service: str,
                       addresses: dict[tuple[str, int], tuple[str, int]], where: str) -> list[str]:
    out = list(args)
    for i, arg in enumerate(args[:-1]):
        if arg in PORT_OPTIONS:
            key = (service, int(args[i + 1]))
            if key not in addresses:
                raise StackError(f"{where}: {service}:{key[1]} is no port a service listens on")
            out[i + 1] = str(addresses[key][1])
        elif arg in HOST_OPTIONS and args[i + 1] in ANY_ADDRESS:
            out[i + 1] = HOST
    return out


def rewrite_localhost(text: str, *, service: str,
                      addresses: dict[tuple[str, int], tuple[str, int]]) -> str:
    """`localhost:3000` or `'localhost', 8786` in a service's own healthcheck: itself."""

    def one(m: re.Match[str]) -> str:
        key = (service, int(m["port"]))
        if key not in addresses:
            raise StackError(f"{service}: healthcheck probes port {m['port']}, which it does not serve")
        return f"{HOST}{m['sep']}{addresses[key][1]}"

    return re.sub(r"\blocalhost(?P<sep>:|['\"],\s*)(?P<port>\d+)\b", one, text)


def runtime_image(dockerfile: str) -> tuple[dict[str, str], str, list[tuple[str, str]]]:
    """The last stage's ENV (in order), WORKDIR and COPYs from the build context."""
    env, workdir, copies = {}, "/", []
    for instruction, args in dockerfile_instructions(dockerfile):
        if instruction == "FROM":
            env, workdir, copies = {}, "/", []
        elif instruction == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                env[key] = value
        elif instruction == "WORKDIR":
            workdir = args.strip()
        elif instruction == "COPY":
            parts = instruction_argv(args)
            if not any(p.startswith("--from") for p in parts):
                sources = [p for p in parts[:-1] if not p.startswith("--")]
                copies += [(src, parts[-1]) for src in sources]
    return env, workdir, copies


def stack_processes(compose: dict[str, Any], *, env: dict[str, str], dockerfile: str,
                    stand_ins: dict[tuple[str, int], tuple[str, int]], root: Path,
                    venv: Path, ports: list[int]) -> Stack:
    """Every pipeline service of `compose` as a process spec (see the module docstring)."""
    services = resolve(compose["services"], env=env)  # KeyError names a variable .env lacks
    started = pipeline_services(compose)
    hosts = set(services)
    addresses = dict(stand_ins)
    free = iter(ports)
    for name in started:
        for i, arg in enumerate(command(services[name])[:-1]):
            if arg in PORT_OPTIONS:
                addresses[(name, int(command(services[name])[i + 1]))] = (HOST, next(free))
        for port in env_listen_ports(environment(services[name])):
            addresses[(name, port)] = (HOST, next(free))
    image_env, workdir, copies = runtime_image(dockerfile)
    volumes = {name: root / "volumes" / name for name in compose.get("volumes") or {}}
    stack = Stack(processes={}, addresses=addresses, volumes=volumes, env=env, services=services)
    for name in started:
        svc = services[name]
        where = f"service {name}"
        own = root / name
        args = rewrite_own_listen(command(svc), service=name, addresses=addresses, where=where)
        args = [rewrite_references(a, addresses=addresses, hosts=hosts, where=where) for a in args]
        args = [str(own) + a if a.startswith("/") else a for a in args]  # container paths
        proc_env = {"HOME": str(own / "home"), "TMPDIR": str(own / "tmp"), "LANG": "C.UTF-8"}
        for key, value in image_env.items():
            value = value.replace("/opt/venv", str(venv)).replace("$PATH", "/usr/local/bin:/usr/bin:/bin")
            proc_env[key] = str(own) + value if value.startswith("/") and key != "PATH" else value
        proc_env.update(rewrite_env(environment(svc), addresses=addresses, hosts=hosts,
                                    service=name, where=where))
        files = {}
        for source, dest in copies:
            text = (REPO / source).read_text()
            content = yaml.safe_load(text) if source.endswith((".yaml", ".yml")) else None
            if isinstance(content, dict) and "load_from" in content:
                content = copy.deepcopy(content)
                for entry in content["load_from"]:
                    grpc = entry.get("grpc_server")
                    if grpc is not None:
                        key = (grpc["host"], int(grpc["port"]))
                        if key not in addresses:
                            raise StackError(f"{source}: grpc_server {key[0]}:{key[1]} is no port "
                                             "a service listens on")
                        grpc["host"], grpc["port"] = addresses[key]
                text = yaml.safe_dump(content)
            files[own / dest.lstrip("/")] = text
        mounts = {}
        for volume in svc.get("volumes") or []:
            source, _, target = volume.partition(":")
            if source not in volumes:
                raise StackError(f"{where}: volume {source!r} is not a named volume")
            mounts[source] = own / target.split(":")[0].lstrip("/")
        check = None
        if svc.get("healthcheck"):
            test = svc["healthcheck"]["test"]
            check = ["sh", "-c", test[1]] if test[0] == "CMD-SHELL" else list(test[1:])
            check = rewrite_own_listen(check, service=name, addresses=addresses,
                                       where=f"{where} healthcheck")
            check = [rewrite_localhost(a, service=name, addresses=addresses) for a in check]
        deps = svc.get("depends_on") or {}
        stack.processes[name] = ProcessSpec(
            service=name, argv=args, env=proc_env, root=own, cwd=own / workdir.lstrip("/"),
            copies=files, volumes=mounts, healthcheck=check,
            depends_on={d: (c or {}).get("condition", "service_started") for d, c in deps.items()})
    return stack


def start_order(stack: Stack) -> list[str]:
    order, pending = [], dict(stack.processes)
    while pending:
        ready = [n for n, p in pending.items()
                 if all(d in PROVIDED or d in order for d in p.depends_on)]
        if not ready:
            raise StackError(f"depends_on cycle among {sorted(pending)}")
        order += ready
        for n in ready:
            del pending[n]
    return order


# ------------------------------------------------------------------------ running it
def materialise(spec: ProcessSpec) -> None:
    for folder in (spec.root / "home", spec.root / "tmp", spec.cwd):
        folder.mkdir(parents=True, exist_ok=True)
    for path, text in spec.copies.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def mount(spec: ProcessSpec, volumes: dict[str, Path]) -> None:
    for volume, target in spec.volumes.items():
        volumes[volume].mkdir(parents=True, exist_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() and not target.is_symlink():
            shutil.rmtree(target)
        target.symlink_to(volumes[volume], target_is_directory=True)


def healthy(spec: ProcessSpec) -> subprocess.CompletedProcess[str]:
    exe = shutil.which(spec.healthcheck[0], path=spec.env["PATH"]) or spec.healthcheck[0]
    try:
        return subprocess.run([exe, *spec.healthcheck[1:]], env=spec.env, cwd=spec.cwd,
                              capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired as err:
        return subprocess.CompletedProcess(err.cmd, 124, "", "healthcheck timed out")


def tails(running: dict[str, Service], chars: int = 6000) -> str:
    return "\n".join(f"----- {n} (exit {s.proc.poll()}) {s.log}\n{s.tail(chars)}"
                     for n, s in running.items())


def wait_healthy(spec: ProcessSpec, running: dict[str, Service], *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if not running[spec.service].alive():
            raise AssertionError(f"{spec.service} exited during start-up\n{tails(running)}")
        result = healthy(spec)
        if result.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{spec.service} not healthy within {timeout_s} s: "
                                 f"{result.stdout[-1000:]}{result.stderr[-2000:]}\n{tails(running)}")
        time.sleep(1)


def isolated(args: list[str], *, hide: list[Path]) -> list[str]:
    """`args` in a mount namespace of its own in which each folder of `hide` is an empty tmpfs:
    a path into another container's filesystem does not exist there, as in Docker. `unshare`
    execs `sh`, which execs the command: the pid (and its session) stay the service's.
    Unprivileged users get the namespace through a user namespace (--map-root-user)."""
    mounts = "".join(f"mount -t tmpfs -o size=1m,mode=0755 none {shlex.quote(str(d))}; " for d in hide)
    privileged = ["--map-root-user"] if os.geteuid() != 0 else []
    return ["unshare", *privileged, "--mount", "--propagation", "private", "sh", "-ec",
            mounts + 'exec "$@"', "isolated", *args]


def start_stack(stack: Stack, *, logs: Path, running: dict[str, Service]) -> None:
    for spec in stack.processes.values():  # every root exists, so each can hide the others
        materialise(spec)
        mount(spec, stack.volumes)
        for volume in stack.volumes.values():
            volume.mkdir(parents=True, exist_ok=True)
    for name in start_order(stack):
        spec = stack.processes[name]
        for dep, condition in spec.depends_on.items():
            if dep in stack.processes and condition == "service_healthy":
                wait_healthy(stack.processes[dep], running, timeout_s=START_TIMEOUT_S)
        exe = shutil.which(spec.argv[0], path=spec.env["PATH"])
        assert exe and exe.startswith(str(Path(spec.env["PATH"].split(":")[0]))), (
            f"{name}: {spec.argv[0]} is not in the installed venv")
        hide = [other.root for other in stack.processes.values() if other is not spec]
        hide += [folder for volume, folder in stack.volumes.items() if volume not in spec.volumes]
        running[name] = start_service(name, isolated([exe, *spec.argv[1:]], hide=hide),
                                      env=spec.env, workdir=logs, cwd=spec.cwd)


def create_buckets(compose_services: dict[str, Any], *, s3: S3Server) -> list[str]:
    """What `createbuckets` does: `mc mb --ignore-existing` for each bucket of its environment."""
    env = environment(compose_services["createbuckets"])
    buckets = [env[k] for k in sorted(env) if k.endswith("_BUCKET")]
    client = s3.client()
    for bucket in buckets:
        client.create_bucket(Bucket=bucket)
    return buckets


def stack_env(*, s3: S3Server, pg: PgDatabase) -> dict[str, str]:
    """.env.example with the test's values for every credential and bucket name."""
    env = load_env_example()
    env.update(MINIO_ACCESS_KEY=s3.access_key, MINIO_SECRET_KEY=s3.secret_key,
               MINIO_REGION=s3.region, DAGSTER_PG_USER=pg.user,
               DAGSTER_PG_PASSWORD=pg.password or "unused-with-trust-auth", DAGSTER_PG_DB=pg.db,
               IMAGERY_BUCKET=unique_bucket("imagery-uploads"),
               HEATMAP_BUCKET=unique_bucket("analysis-heatmaps"), REPORT_BUCKET=unique_bucket("reports"))
    if "IMAGERY_API_TOKENS_SHA256" in env:
        env["IMAGERY_API_TOKENS_SHA256"] = hashlib.sha256(API_TOKEN.encode()).hexdigest()
    leftover = [k for k, v in env.items() if v.startswith("change-me")]
    assert leftover == [], f"test values missing for {leftover}"
    return env


def stand_ins(*, s3: S3Server, pg: PgDatabase) -> dict[tuple[str, int], tuple[str, int]]:
    host, port = s3.endpoint_url.removeprefix("http://").split(":")
    return {("minio", 9000): (host, int(port)), ("postgres", 5432): (pg.host, pg.port)}


def run_statuses(pg: PgDatabase) -> list[str]:
    with pg.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('runs') IS NOT NULL")
        if not cur.fetchone()[0]:
            return []
        cur.execute("SELECT status FROM runs ORDER BY create_timestamp")
        return [row[0] for row in cur.fetchall()]


def wait_for_report(s3: S3Server, bucket: str, keys: list[str], *, pg: PgDatabase,
                    running: dict[str, Service]) -> None:
    """Until the report's objects exist; fails early when a service exited or the run failed
    for good (after the run retries dagster.yaml allows), with every process's log tail."""
    retries = yaml.safe_load((REPO / "dagster.yaml").read_text())["run_retries"]["max_retries"]
    client = s3.client()
    deadline = time.monotonic() + REPORT_TIMEOUT_S
    while True:
        found = {o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])}
        if set(keys) <= found:
            return
        dead = [n for n, s in running.items() if not s.alive()]
        statuses = run_statuses(pg)
        settled = statuses.count("FAILURE") > retries and all(
            s in ("FAILURE", "SUCCESS", "CANCELED") for s in statuses)
        if dead or settled or time.monotonic() > deadline:
            why = (f"exited: {', '.join(dead)}" if dead else f"runs {statuses}" if settled
                   else f"not within {REPORT_TIMEOUT_S} s (runs {statuses})")
            raise AssertionError(f"{keys} not in bucket {bucket!r} (has {sorted(found)}): {why}\n"
                                 f"{tails(running)}")
        time.sleep(2)


# ------------------------------------------------------------------------ tests
# The first test to use `installed_venv` pays for the venv (minutes; pytest-timeout counts
# fixture set-up), so it gets more than the suite's 600 s.
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_stack__compose_services_run_as_processes_and_turn_an_upload_into_a_report(
        installed_venv: InstalledVenv, seaweed: S3Server, pg: PgDatabase, tmp_path: Path) -> None:
    compose = load_compose()
    env = stack_env(s3=seaweed, pg=pg)
    started = pipeline_services(compose)
    assert {"user-code", "dagster-webserver", "dagster-daemon", "dask-scheduler",
            "dask-worker"} <= set(started)
    stack = stack_processes(compose, env=env, dockerfile=DOCKERFILE.read_text(),
                            stand_ins=stand_ins(s3=seaweed, pg=pg), root=tmp_path / "stack",
                            venv=installed_venv.root, ports=free_ports(len(started) * 3))
    buckets = create_buckets(stack.services, s3=seaweed)
    assert sorted(buckets) == sorted([env["IMAGERY_BUCKET"], env["HEATMAP_BUCKET"], env["REPORT_BUCKET"]])

    running: dict[str, Service] = {}
    try:
        start_stack(stack, logs=tmp_path / "logs", running=running)
        for spec in stack.processes.values():  # everything up before the upload, as in production
            if spec.healthcheck:
                wait_healthy(spec, running, timeout_s=START_TIMEOUT_S)
        batch = write_sample_batch(tmp_path / "upload", batch_id="stack-farm-2026-06-14", size=128)
        client = seaweed.client()
        for name in [f for f in batch.files if f != "manifest.json"] + ["manifest.json"]:
            client.upload_file(str(batch.folder / name), env["IMAGERY_BUCKET"], f"{batch.batch_id}/{name}")
        wait_for_report(seaweed, env["REPORT_BUCKET"],
                        [f"{batch.batch_id}/report.pdf", f"{batch.batch_id}/summary.json"],
                        pg=pg, running=running)
        heatmaps = {o["Key"] for o in client.list_objects_v2(Bucket=env["HEATMAP_BUCKET"])["Contents"]}
        assert f"{batch.batch_id}/ndvi.tif" in heatmaps
        for spec in stack.processes.values():
            if spec.healthcheck:
                result = healthy(spec)
                assert result.returncode == 0, f"{spec.service} unhealthy: {result.stderr[-2000:]}"
        assert [n for n, s in running.items() if not s.alive()] == []
    finally:
        leftovers = {n: s.stop() for n, s in reversed(running.items())}
    assert {n: pids for n, pids in leftovers.items() if pids} == {}
    assert not any(session_members(s.proc.pid) for s in running.values())


def _specs(compose: dict[str, Any], tmp_path: Path, env: dict[str, str] | None = None) -> Stack:
    env = env if env is not None else {**load_env_example(), "DAGSTER_PG_DB": "x"}
    started = pipeline_services(compose)
    return stack_processes(compose, env=env, dockerfile=DOCKERFILE.read_text(),
                           stand_ins={("minio", 9000): (HOST, 1), ("postgres", 5432): (HOST, 2)},
                           root=tmp_path, venv=tmp_path / "venv",
                           ports=list(range(20000, 20000 + 3 * len(started))))


def test_stack__process_specs_follow_the_compose_file(tmp_path: Path) -> None:
    """What the slow test starts, checked cheaply: addresses, isolation and the shared volume."""
    stack = _specs(load_compose(), tmp_path)
    procs = stack.processes
    scheduler = stack.addresses[("dask-scheduler", 8786)]
    user_code = stack.addresses[("user-code", 4000)]
    assert procs["dask-worker"].argv[2] == f"tcp://{scheduler[0]}:{scheduler[1]}"
    assert procs["user-code"].env["DASK_SCHEDULER_ADDRESS"] == f"tcp://{HOST}:{scheduler[1]}"
    assert procs["user-code"].env["MINIO_ENDPOINT_URL"] == f"http://{HOST}:1"
    assert (procs["user-code"].env["DAGSTER_PG_HOST"], procs["user-code"].env["DAGSTER_PG_PORT"]) == (
        HOST, "2")
    assert option(procs["user-code"].argv, "-h") == HOST
    assert option(procs["user-code"].argv, "-p") == str(user_code[1])
    workspace = next(t for p, t in procs["dagster-daemon"].copies.items() if p.name == "workspace.yaml")
    assert yaml.safe_load(workspace)["load_from"][0]["grpc_server"] | {"location_name": ""} == {
        "host": HOST, "port": user_code[1], "location_name": ""}
    assert all(str(p).startswith(str(spec.root)) for spec in procs.values()
               for p in (spec.cwd, spec.env["TMPDIR"], spec.env["HOME"], spec.env.get("DAGSTER_HOME", spec.root)))
    assert len({spec.env["TMPDIR"] for spec in procs.values()}) == len(procs)
    if "api" in procs:  # listens where its environment says; reaches the webserver by name
        api, web = stack.addresses[("api", 8080)], stack.addresses[("dagster-webserver", 3000)]
        assert (procs["api"].env["IMAGERY_API_HOST"], procs["api"].env["IMAGERY_API_PORT"]) == (
            HOST, str(api[1]))
        assert procs["api"].env["IMAGERY_API_DAGSTER_URL"] == f"http://{HOST}:{web[1]}"
        assert f"http://{HOST}:{api[1]}/healthz" in procs["api"].healthcheck[-1]
    mounting = {n for n, spec in procs.items() if "dagster-storage" in spec.volumes}
    assert mounting == {"user-code", "dagster-webserver", "dagster-daemon"}
    assert procs["dask-worker"].volumes == {}


@pytest.mark.parametrize(("path", "value", "expected"), [
    ("services.dask-worker.command.2", "tcp://dask-schedular:8786", "'dask-schedular'"),
    ("services.user-code.command.6", "4001", "user-code:4000"),
    ("services.user-code.environment.DAGSTER_PG_PORT", "5433", "DAGSTER_PG_PORT='5433'"),
    ("services.dask-scheduler.healthcheck.test.3", "import socket; socket.create_connection("
     "('localhost', 8787), timeout=5).close()", "probes port 8787"),
])
def test_stack__process_specs__detect_a_broken_compose_file(path: str, value: str, expected: str,
                                                             tmp_path: Path) -> None:
    compose = load_compose()
    node = compose
    *parents, last = path.split(".")
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    with pytest.raises(StackError, match=re.escape(expected)):
        _specs(compose, tmp_path)


def test_stack__process_specs__name_a_variable_env_lacks(tmp_path: Path) -> None:
    env = {k: v for k, v in load_env_example().items() if k != "DASK_WORKER_NTHREADS"}
    with pytest.raises(KeyError, match="DASK_WORKER_NTHREADS"):
        _specs(load_compose(), tmp_path, env=env)
