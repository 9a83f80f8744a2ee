"""The Docker stack's files as data: docker-compose.yml and .env.example parsed and interpolated the
way Compose does, the Dockerfile's instructions. Shared by the static checks (tests/test_compose.py)
and the stack run as processes (tests/test_compose_stack.py)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
ENV_EXAMPLE = REPO / ".env.example"
WORKSPACE = REPO / "docker" / "workspace.yaml"
# `$$` (a literal dollar), `${NAME...}` or `$NAME`.
INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_]\w*)([^}]*)\}|\$([A-Za-z_]\w*)")


def load_compose(path: Path = COMPOSE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def load_env_example(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip()
    return env


def interpolate(value: str, *, env: dict[str, str]) -> str:
    """Compose interpolation; raises KeyError naming a variable that is unset and has no default."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, modifier = m.group(1) or m.group(3), m.group(2) or ""
        if name in env and not (modifier.startswith(":") and env[name] == ""):
            return env[name]
        if modifier.startswith((":-", "-")):
            return modifier.split("-", 1)[1]
        raise KeyError(f"{name} is not defined in .env.example")

    return INTERPOLATION.sub(one, value)


def resolve(node: Any, *, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env=env)
    if isinstance(node, list):
        return [resolve(x, env=env) for x in node]
    if isinstance(node, dict):
        return {k: resolve(v, env=env) for k, v in node.items()}
    return node


def strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [s for x in node for s in strings(x)]
    if isinstance(node, dict):
        return [s for v in node.values() for s in strings(v)]
    return []


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def option(argv: list[str], *names: str) -> str | None:
    for i, arg in enumerate(argv[:-1]):
        if arg in names:
            return argv[i + 1]
    return None



# ---------------------------------------------------------------- Dockerfile
def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comment lines dropped."""
    out, pending = [], ""
    for line in text.splitlines():
        if line.strip().startswith("#"):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        if pending.strip():
            word, _, args = pending.strip().partition(" ")
            out.append((word.upper(), args.strip()))
        pending = ""
    return out


def argv(args: str) -> list[str]:
    return json.loads(args) if args.startswith("[") else shlex.split(args)
