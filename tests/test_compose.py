"""Static checks of the Docker stack (Dockerfile, docker-compose.yml, .env.example, docker/).

No Docker engine is needed. Each check is a function returning a list of problems; a test asserts
the real files have none, and a second test breaks a copy on purpose and asserts the check notices.

Settings scheme: containers get settings only through `${VAR:?message}` interpolation, which
Compose fills from `.env` in the project folder (a copy of `.env.example`, see docs/deploy.md);
`env_file:` is not used. The tests interpolate with the values of `.env.example`.
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.compose import (
    COMPOSE,
    DOCKERFILE,
    INTERPOLATION,
    REPO,
    WORKSPACE,
    argv,
    command,
    dockerfile_instructions,
    environment,
    interpolate,
    load_compose,
    load_env_example,
    option,
    resolve,
    strings,
)


# DESIGN.md §5: the environment the pipeline code reads. IMAGERY_DATA_DIR is the embedded local
# store's folder, unused when MINIO_ENDPOINT_URL is set (which the stack does; checked below).
DESIGN_ENV = (
    "MINIO_ENDPOINT_URL", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "MINIO_REGION",
    "IMAGERY_DATA_DIR", "IMAGERY_BUCKET", "HEATMAP_BUCKET", "REPORT_BUCKET",
    "DASK_SCHEDULER_ADDRESS", "DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER",
    "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB",
    "IMAGERY_COG_COMPRESSION", "IMAGERY_COG_MAX_Z_ERROR", "IMAGERY_INDICES_FILE",
    "IMAGERY_MZ_CLASSES", "IMAGERY_MZ_MIN_HA", "IMAGERY_CANOPY_NDVI", "IMAGERY_AREA_UNIT",
    "IMAGERY_API_TOKENS_SHA256", "IMAGERY_API_HOST", "IMAGERY_API_PORT",
)
# The HTTP API's settings belong to the `api` service (issue 16), not to every code service.
NOT_IN_STACK = {"IMAGERY_DATA_DIR", "IMAGERY_API_TOKENS_SHA256", "IMAGERY_API_HOST", "IMAGERY_API_PORT"}
# Passed through to every code service, empty unless the operator sets them in .env.
OPTIONAL_IN_STACK = {"IMAGERY_COG_MAX_Z_ERROR", "IMAGERY_INDICES_FILE"}
CODE_SERVICES = ("user-code", "dagster-daemon", "dagster-webserver", "dask-worker", "api")
# (service, container port) -> host addresses it may be bound to (None: any, from .env).
ALLOWED_PORTS = {("dagster-webserver", 3000): None, ("minio", 9001): None, ("api", 8080): None,
                 ("minio", 9000): {"127.0.0.1"}}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|ROOT_USER|TOKEN|_KEY$", re.IGNORECASE)


# ---------------------------------------------------------------- checks (each returns problems)
def check_references(c: dict[str, Any]) -> list[str]:
    problems = []
    services, volumes, networks = c["services"], c.get("volumes") or {}, c.get("networks") or {}
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        for dep in deps if isinstance(deps, (list, dict)) else []:
            if dep not in services:
                problems.append(f"{name}: depends_on unknown service {dep!r}")
        for vol in svc.get("volumes") or []:
            source = vol.get("source") if isinstance(vol, dict) else vol.split(":")[0]
            if source and not source.startswith((".", "/", "~")) and source not in volumes:
                problems.append(f"{name}: named volume {source!r} is not declared")
        nets = svc.get("networks") or []
        if not nets:
            problems.append(f"{name}: not attached to the explicit network")
        for net in nets:
            if net not in networks:
                problems.append(f"{name}: network {net!r} is not declared")
        env_files = svc.get("env_file") or []
        for entry in [env_files] if isinstance(env_files, (str, dict)) else env_files:
            path = entry if isinstance(entry, str) else entry["path"]
            path = ".env.example" if path == ".env" else path
            if not (REPO / path).exists() and (isinstance(entry, str) or entry.get("required", True)):
                problems.append(f"{name}: env_file {path!r} does not exist")
    return problems


def check_health_conditions(c: dict[str, Any]) -> list[str]:
    problems = []
    services = c["services"]
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            problems.append(f"{name}: depends_on without conditions")
            continue
        for dep, spec in deps.items():
            cond, target = (spec or {}).get("condition"), services.get(dep, {})
            if cond == "service_healthy" and not target.get("healthcheck"):
                problems.append(f"{name}: waits for {dep} to be healthy, {dep} has no healthcheck")
            elif cond == "service_completed_successfully" and target.get("restart", "no") != "no":
                problems.append(f"{name}: waits for one-shot {dep}, which restarts")
            elif cond not in ("service_healthy", "service_completed_successfully"):
                problems.append(f"{name}: depends_on {dep} with condition {cond!r}")
    return problems


def check_interpolations(values: list[str], *, env: dict[str, str]) -> list[str]:
    """Compose interpolates values (not comments or keys): each ${VAR} is in .env.example, required."""
    problems = []
    for m in INTERPOLATION.finditer("\n".join(values)):
        name, modifier = m.group(1) or m.group(3), m.group(2) or ""
        if name is None:
            continue
        if name not in env:
            problems.append(f"${{{name}}} is used but not defined in .env.example")
        if not (modifier.startswith(":?") or name in OPTIONAL_IN_STACK and modifier.startswith("?")):
            problems.append(f"${{{name}{modifier}}} must be ${{{name}:?message}} (fail when unset)")
    return problems


def check_code_env(c: dict[str, Any], *, env: dict[str, str]) -> list[str]:
    problems = []
    services = resolve(c["services"], env=env)
    for name in CODE_SERVICES:
        have = environment(services.get(name, {}))
        problems += [f"{name}: {var} not set" for var in DESIGN_ENV
                     if var not in NOT_IN_STACK and var not in have
                     or var not in NOT_IN_STACK | OPTIONAL_IN_STACK and not have.get(var)]
    # The in-stack addresses must point at the services, on the ports they listen on.
    env0 = environment(services[CODE_SERVICES[0]])
    minio = re.fullmatch(r"http://([\w-]+):(\d+)", env0.get("MINIO_ENDPOINT_URL", ""))
    if not minio or minio[1] not in services or option(
            command(services[minio[1]]), "--address") != f":{minio[2]}":
        problems.append(f"MINIO_ENDPOINT_URL {env0.get('MINIO_ENDPOINT_URL')!r} is no MinIO service")
    dask = re.fullmatch(r"tcp://([\w-]+):(\d+)", env0.get("DASK_SCHEDULER_ADDRESS", ""))
    if not dask or dask[1] not in services or option(command(services[dask[1]]), "--port") != dask[2]:
        problems.append(f"DASK_SCHEDULER_ADDRESS {env0.get('DASK_SCHEDULER_ADDRESS')!r} is no scheduler")
    elif dask[0] not in command(services["dask-worker"]):
        problems.append("dask-worker does not connect to DASK_SCHEDULER_ADDRESS")
    pg = services.get(env0.get("DAGSTER_PG_HOST", ""), {})
    if not str(pg.get("image", "")).startswith("postgres:") or env0.get("DAGSTER_PG_PORT") != "5432":
        problems.append("DAGSTER_PG_HOST/PORT do not name the postgres service on 5432")
    # Servers and clients must share credentials.
    pairs = [("postgres", "POSTGRES_USER", "DAGSTER_PG_USER"),
             ("postgres", "POSTGRES_PASSWORD", "DAGSTER_PG_PASSWORD"),
             ("postgres", "POSTGRES_DB", "DAGSTER_PG_DB"),
             ("minio", "MINIO_ROOT_USER", "MINIO_ACCESS_KEY"),
             ("minio", "MINIO_ROOT_PASSWORD", "MINIO_SECRET_KEY")]
    for server, server_var, client_var in pairs:
        if environment(services[server]).get(server_var) != env0.get(client_var):
            problems.append(f"{server} {server_var} differs from the code's {client_var}")
    return problems


def published(service: dict[str, Any]) -> list[tuple[str, int]]:
    """(host address, container port) of each published port (short or long syntax)."""
    out = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            if port.get("published") is not None:
                out.append((str(port.get("host_ip", "0.0.0.0")), int(port["target"])))
            continue
        parts = str(port).split("/")[0].rsplit(":", 2)
        host_ip = parts[0] if len(parts) == 3 else "0.0.0.0"
        out.append((host_ip, int(parts[-1].split("-")[0])))
    return out


def check_ports(c: dict[str, Any], *, env: dict[str, str]) -> list[str]:
    problems = []
    for name, svc in resolve(c["services"], env=env).items():
        if svc.get("network_mode") == "host":
            problems.append(f"{name}: network_mode host publishes every port")
        for host_ip, port in published(svc):
            if (name, port) not in ALLOWED_PORTS:
                problems.append(f"{name}: port {port} must not be published")
            elif ALLOWED_PORTS[(name, port)] and host_ip not in ALLOWED_PORTS[(name, port)]:
                problems.append(f"{name}: port {port} bound to {host_ip}, not 127.0.0.1")
    return problems


def check_no_literal_secrets(c: dict[str, Any]) -> list[str]:
    problems = []
    blocks = [("x-" + k[2:], v) for k, v in c.items() if k.startswith("x-") and isinstance(v, dict)]
    blocks += [(n, s.get("environment") or {}) for n, s in c["services"].items()]
    for where, env in blocks:
        env = environment({"environment": env})
        for var, value in env.items():
            if SECRET_NAME.search(var) and not re.fullmatch(r"\$\{\w+:\?[^}]*\}", value):
                problems.append(f"{where}: {var} must be ${{VAR:?...}} from .env, not {value!r}")
    for text in strings(c):
        if re.search(r"://[^/\s:@]+:[^/\s@$]+@", text):
            problems.append(f"credentials in a URL: {text!r}")
    return problems


# ---------------------------------------------------------------- Dockerfile
def dockerignore_patterns() -> list[str]:
    lines = (line.strip() for line in (REPO / ".dockerignore").read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def dockerignored(path: str, patterns: list[str]) -> bool:
    def regex(p: str) -> str:
        out = re.escape(p.strip("/")).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        return out.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")

    parts, ignored = path.split("/"), False
    for p in patterns:
        negate, p = p.startswith("!"), p.lstrip("!")
        if any(re.fullmatch(regex(p), "/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            ignored = not negate
    return ignored


def check_dockerfile(text: str, *, ignore: list[str]) -> list[str]:
    problems, ins = [], dockerfile_instructions(text)
    froms = [a for i, a in ins if i == "FROM"]
    args = dict(a.partition("=")[::2] for i, a in ins if i == "ARG" and "=" in a)
    if not froms or any(interpolate(f.split()[0], env=args) != "python:3.11-slim" for f in froms):
        problems.append("every stage must build FROM python:3.11-slim")
    runs = " ".join(a for i, a in ins if i == "RUN")
    for needed in ("pip install -r requirements.lock", "pip install --no-deps .", "compileall"):
        if needed not in runs:
            problems.append(f"no RUN with {needed!r}")
    users = [a for i, a in ins if i == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("the image must end with a non-root USER")
    envs = " ".join(a for i, a in ins if i == "ENV")
    home = re.search(r"DAGSTER_HOME=(\S+)", envs)
    copies = [argv(a) for i, a in ins if i == "COPY"]
    copied = {}  # container path -> repo path
    for cp in copies:
        if any(x.startswith("--from") for x in cp):
            continue
        sources, dest = [x for x in cp[:-1] if not x.startswith("--")], cp[-1]
        for src in sources:
            if not (REPO / src).exists():
                problems.append(f"COPY {src}: no such file in the repository")
            elif dockerignored(src, ignore):
                problems.append(f"COPY {src}: excluded by .dockerignore")
            copied[dest.rstrip("/") + ("/" + Path(src).name if dest.endswith("/") else "")] = src
    if not home or copied.get(home[1].rstrip("/") + "/dagster.yaml") != "dagster.yaml":
        problems.append("DAGSTER_HOME must be set and dagster.yaml copied into it")
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    wanted = {d.name for d in REPO.iterdir() if (d / "__init__.py").exists()
              and any(fnmatch.fnmatchcase(d.name, pattern) for pattern in include)}
    wanted.add(pyproject["project"]["readme"])
    all_sources = {x.rstrip("/") for cp in copies for x in cp[:-1]}
    problems += [f"{w} is needed by `pip install .` but not COPYed" for w in wanted - all_sources]
    return problems


def check_lock(text: str) -> list[str]:
    """The image installs requirements.lock before the source is copied: third-party pins only."""
    name = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["name"]
    problems = []
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if re.match(r"(-e|--editable)\b|\.$|file:", line) or re.match(rf"{name}\b", line, re.I):
            problems.append(f"requirements.lock: {line!r} needs the project source; pin only deps")
    return problems


def check_entrypoints(c: dict[str, Any], *, dockerfile: str) -> list[str]:
    """Modules and files named by the image CMD and the compose commands exist in the image."""
    problems, ins = [], dockerfile_instructions(dockerfile)
    workdir = [a for i, a in ins if i == "WORKDIR"][-1].rstrip("/")
    copied = {argv(a)[-1] for i, a in ins if i == "COPY"}
    cmds = [("Dockerfile CMD", argv([a for i, a in ins if i == "CMD"][-1]))]
    cmds += [(n, command(s)) for n, s in c["services"].items() if "build" in s]
    for where, cmd in cmds:
        module = option(cmd, "-m", "--module-name")
        base = REPO / module.replace(".", "/") if module else REPO
        if module and not (base.with_suffix(".py").exists() or (base / "__init__.py").exists()):
            problems.append(f"{where}: module {module} does not exist")
        workspace = option(cmd, "-w", "--workspace")
        if workspace and f"{workdir}/{workspace}" not in copied:
            problems.append(f"{where}: {workspace} is not copied into {workdir}")
    return problems


def check_workspace(c: dict[str, Any], workspace: dict[str, Any]) -> list[str]:
    problems = []
    for entry in workspace["load_from"]:
        grpc = entry.get("grpc_server")
        if grpc is None:
            problems.append(f"workspace entry {entry} is not a grpc_server")
            continue
        svc = c["services"].get(grpc["host"])
        cmd = command(svc or {})
        if svc is None or option(cmd, "-p", "--port") != str(grpc["port"]):
            problems.append(f"no service {grpc['host']!r} serving gRPC on port {grpc['port']}")
        elif str(grpc["port"]) not in strings(svc.get("healthcheck", {})):
            problems.append(f"{grpc['host']}: healthcheck does not probe port {grpc['port']}")
    return problems


# ---------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return load_env_example()


def broken(c: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of c with the item at dotted `path` (a.b.c) set to value (None: deleted)."""
    c = copy.deepcopy(c)
    *parents, last = path.split(".")
    node = c
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return c


def check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "check-jsonschema"
    return subprocess.run([str(exe), "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=120)


def test_compose__valid_against_compose_spec() -> None:
    result = check_jsonschema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose__spec_check_rejects_unknown_keys(tmp_path: Path) -> None:
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(COMPOSE.read_text().replace("    restart: unless-stopped\n",
                                               "    restrat: unless-stopped\n", 1))
    result = check_jsonschema(bad)
    assert result.returncode != 0 and "restrat" in result.stdout


def test_compose__references_resolve(compose: dict[str, Any]) -> None:
    assert check_references(compose) == []


@pytest.mark.parametrize(("path", "value", "expected"), [
    ("services.user-code.depends_on.postgress", {"condition": "service_healthy"}, "unknown service"),
    ("volumes.minio-data", None, "'minio-data' is not declared"),
    ("services.dask-worker.networks", ["default"], "'default' is not declared"),
    ("services.minio.env_file", [".env.prod"], "'.env.prod' does not exist"),
])
def test_compose__references_resolve__detects_breakage(
        compose: dict[str, Any], path: str, value: Any, expected: str) -> None:
    problems = check_references(broken(compose, path, value))
    assert any(expected in p for p in problems), problems


def test_compose__dependencies_wait_for_health(compose: dict[str, Any]) -> None:
    assert check_health_conditions(compose) == []
    assert compose["services"]["user-code"]["depends_on"]["createbuckets"] == {
        "condition": "service_completed_successfully"}


def test_compose__dependencies_wait_for_health__detects_breakage(compose: dict[str, Any]) -> None:
    problems = check_health_conditions(broken(compose, "services.user-code.healthcheck", None))
    assert any("user-code has no healthcheck" in p for p in problems), problems


def test_compose__interpolated_variables_defined_in_env_example(env: dict[str, str]) -> None:
    values = strings(load_compose())
    assert check_interpolations(values, env=env) == []
    used = {m.group(1) or m.group(3) for m in INTERPOLATION.finditer("\n".join(values))} - {None}
    assert set(env) == used, f"unused in compose: {set(env) - used}"
    resolve(load_compose(), env=env)  # raises KeyError on any unset variable


def test_compose__interpolated_variables__detects_breakage(env: dict[str, str]) -> None:
    values = strings(load_compose()) + ["${NOT_IN_ENV_EXAMPLE:?x}", "${MINIO_REGION:-us-east-1}"]
    problems = check_interpolations(values, env=env)
    assert any("NOT_IN_ENV_EXAMPLE" in p for p in problems)
    assert any("MINIO_REGION:-us-east-1" in p for p in problems)


def test_compose__design_env_reaches_code_services(compose: dict[str, Any],
                                                   env: dict[str, str]) -> None:
    assert check_code_env(compose, env=env) == []
    worker = environment(resolve(compose, env=env)["services"]["dask-worker"])
    assert worker["MINIO_ENDPOINT_URL"] == "http://minio:9000"  # so IMAGERY_DATA_DIR is unused
    assert worker["DASK_SCHEDULER_ADDRESS"] == "tcp://dask-scheduler:8786"


@pytest.mark.parametrize(("path", "value", "expected"), [
    ("services.dagster-daemon.environment.REPORT_BUCKET", None, "dagster-daemon: REPORT_BUCKET"),
    ("services.dask-worker.environment.DAGSTER_PG_HOST", None, "dask-worker: DAGSTER_PG_HOST"),
    ("services.user-code.environment.MINIO_ENDPOINT_URL", "http://minio:9999", "MINIO_ENDPOINT_URL"),
    ("services.dask-scheduler.command", ["dask", "scheduler", "--port", "8787"], "no scheduler"),
    ("services.minio.environment.MINIO_ROOT_PASSWORD", "${DAGSTER_PG_PASSWORD:?x}",
     "MINIO_ROOT_PASSWORD differs"),
])
def test_compose__design_env__detects_breakage(compose: dict[str, Any], env: dict[str, str],
                                               path: str, value: Any, expected: str) -> None:
    problems = check_code_env(broken(compose, path, value), env=env)
    assert any(expected in p for p in problems), problems


def test_compose__design_env_list_matches_design_md() -> None:
    design = next((p for p in (REPO / "DESIGN.md", REPO / "docs" / "DESIGN.md",
                               REPO.parent / "shared" / "DESIGN.md") if p.exists()), None)
    if design is None:
        pytest.skip("DESIGN.md is not available next to this checkout")
    section = design.read_text().split("## 5.", 1)[1].split("\n## ", 1)[0]
    names = set()
    for row in section.splitlines():
        if row.startswith("| `"):
            tokens = re.findall(r"`(\w+)`", row.split("|")[1])
            prefix = tokens[0].rsplit("_", 1)[0]
            names |= {prefix + t if t.startswith("_") else t for t in tokens}
    assert names == set(DESIGN_ENV)


def test_compose__only_allowed_ports_published(compose: dict[str, Any],
                                               env: dict[str, str]) -> None:
    assert check_ports(compose, env=env) == []
    ports = {(n, p) for n, s in resolve(compose, env=env)["services"].items()
             for _, p in published(s)}
    assert {("dagster-webserver", 3000), ("minio", 9001), ("api", 8080)} <= ports


@pytest.mark.parametrize(("path", "value", "expected"), [
    ("services.postgres.ports", ["5432:5432"], "postgres: port 5432"),
    ("services.minio.ports", ["9000:9000"], "bound to 0.0.0.0"),
    ("services.dask-scheduler.ports", [{"target": 8786, "published": 8786}], "port 8786"),
])
def test_compose__only_allowed_ports__detects_breakage(compose: dict[str, Any], env: dict[str, str],
                                                       path: str, value: Any, expected: str) -> None:
    problems = check_ports(broken(compose, path, value), env=env)
    assert any(expected in p for p in problems), problems


def test_compose__no_literal_secrets(compose: dict[str, Any], env: dict[str, str]) -> None:
    assert check_no_literal_secrets(compose) == []
    secrets = [v for k, v in env.items() if SECRET_NAME.search(k)]
    assert secrets and all(v.startswith("change-me-") for v in secrets), secrets
    assert dockerignored(".env", dockerignore_patterns())


@pytest.mark.parametrize(("path", "value", "expected"), [
    ("services.postgres.environment.POSTGRES_PASSWORD", "hunter2", "POSTGRES_PASSWORD"),
    ("x-pipeline-env.MINIO_SECRET_KEY", "${MINIO_SECRET_KEY:-minioadmin}", "MINIO_SECRET_KEY"),
    ("services.minio.environment.MC_HOST_x", "http://admin:pw@minio:9000", "credentials in a URL"),
])
def test_compose__no_literal_secrets__detects_breakage(compose: dict[str, Any], path: str,
                                                       value: Any, expected: str) -> None:
    problems = check_no_literal_secrets(broken(compose, path, value))
    assert any(expected in p for p in problems), problems


def test_dockerfile__builds_one_nonroot_image_from_the_lock() -> None:
    ignore = dockerignore_patterns()
    assert check_dockerfile(DOCKERFILE.read_text(), ignore=ignore) == []


def test_lock__pins_only_third_party_packages() -> None:
    lock = REPO / "requirements.lock"
    assert lock.exists(), "requirements.lock is missing: the Docker build installs from it"
    text = lock.read_text()
    assert re.search(r"^dagster==", text, re.M | re.I) and check_lock(text) == []


@pytest.mark.parametrize("line", ["-e .", "imagery-pipeline @ file:///work/main", "."])
def test_lock__pins_only_third_party_packages__detects_breakage(line: str) -> None:
    assert check_lock(f"dagster==1.13.27\n{line}\n") != []


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("USER dagster:dagster", "USER root", "non-root"),
    ("COPY resources ./resources", "COPY resourcez ./resources", "resourcez: no such file"),
    ("COPY resources ./resources\n", "", "resources is needed"),
    ("pip install -r requirements.lock", "pip install -r requirements.txt", "requirements.lock"),
])
def test_dockerfile__detects_breakage(old: str, new: str, expected: str) -> None:
    text = DOCKERFILE.read_text()
    assert old in text
    ignore = dockerignore_patterns()
    problems = check_dockerfile(text.replace(old, new), ignore=ignore)
    assert any(expected in p for p in problems), problems


def test_dockerfile__copy_of_ignored_path_detected() -> None:
    ignore = dockerignore_patterns() + ["pipeline"]
    problems = check_dockerfile(DOCKERFILE.read_text(), ignore=ignore)
    assert any("pipeline: excluded by .dockerignore" in p for p in problems), problems


def test_compose__pipeline_services_share_one_image(compose: dict[str, Any]) -> None:
    built = {n: s for n, s in compose["services"].items() if "build" in s}
    assert set(built) == {*CODE_SERVICES, "dask-scheduler"}
    assert len({s["image"] for s in built.values()}) == 1
    assert all(s["build"]["dockerfile"] == "Dockerfile" for s in built.values())
    assert "container_name" not in compose["services"]["dask-worker"]  # --scale needs this


def test_entrypoints__name_existing_modules_and_files(compose: dict[str, Any]) -> None:
    assert check_entrypoints(compose, dockerfile=DOCKERFILE.read_text()) == []


def test_entrypoints__detects_breakage(compose: dict[str, Any]) -> None:
    c = broken(compose, "services.dagster-daemon.command",
               ["dagster-daemon", "run", "-w", "workspace.yml"])
    text = DOCKERFILE.read_text().replace("pipeline.definitions", "pipeline.defs")
    problems = check_entrypoints(c, dockerfile=text)
    assert any("Dockerfile CMD: module pipeline.defs" in p for p in problems), problems
    assert any("dagster-daemon: workspace.yml" in p for p in problems), problems


def test_workspace__points_at_user_code_server(compose: dict[str, Any]) -> None:
    workspace = yaml.safe_load(WORKSPACE.read_text())
    assert check_workspace(compose, workspace) == []
    location = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dagster"]
    assert [e["grpc_server"]["location_name"] for e in workspace["load_from"]] == [
        location["code_location_name"]]


def test_workspace__detects_breakage(compose: dict[str, Any]) -> None:
    workspace = {"load_from": [{"grpc_server": {"host": "user-code", "port": 4001}},
                               {"grpc_server": {"host": "usercode", "port": 4000}}]}
    problems = check_workspace(compose, workspace)
    assert len(problems) == 2, problems


def test_compose__code_services_environment_is_valid_settings(compose: dict[str, Any],
                                                                env: dict[str, str]) -> None:
    """What compose gives each code service passes the settings checks the code location runs."""
    from pipeline.core.errors import ConfigurationError
    from pipeline.settings import Settings

    services = resolve(compose["services"], env=env)
    for name in CODE_SERVICES:
        values = environment(services[name])
        if name == "api":  # the example value is no digest: serve must refuse to start with it
            with pytest.raises(ConfigurationError, match="IMAGERY_API_TOKENS_SHA256"):
                Settings.from_env(values)
            values["IMAGERY_API_TOKENS_SHA256"] = hashlib.sha256(b"a token").hexdigest()
        settings = Settings.from_env(values)
        assert settings.endpoint_url == "http://minio:9000", name
        assert (settings.cog_compression, settings.mz_classes, settings.area_unit) == (
            env["IMAGERY_COG_COMPRESSION"], int(env["IMAGERY_MZ_CLASSES"]), env["IMAGERY_AREA_UNIT"])


def test_compose__api_serves_on_its_published_port_with_tokens_from_env(
        compose: dict[str, Any], env: dict[str, str]) -> None:
    """The api service listens on all interfaces in its container, on the port it publishes on
    HOST_BIND_ADDRESS, takes its token digests from .env and submits runs to the webserver."""
    from pipeline.settings import Settings

    api = resolve(compose, env=env)["services"]["api"]
    assert command(api) == ["imagery-pipeline", "serve"]
    raw = environment(compose["services"]["api"])
    assert raw["IMAGERY_API_TOKENS_SHA256"].startswith("${IMAGERY_API_TOKENS_SHA256:?")
    values = environment(api)
    values["IMAGERY_API_TOKENS_SHA256"] = hashlib.sha256(b"a token").hexdigest()
    settings = Settings.from_env(values)
    assert settings.api_host == "0.0.0.0"
    assert published(api) == [(env["HOST_BIND_ADDRESS"], settings.api_port)]
    assert settings.api_dagster_url == "http://dagster-webserver:3000"
    probe = " ".join(api["healthcheck"]["test"])
    assert f"localhost:{settings.api_port}/healthz" in probe
