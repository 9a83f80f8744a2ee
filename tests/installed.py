"""The project as a user or the Docker image gets it: a wheel, installed (not editable) into a
fresh virtualenv with requirements.lock, run from a folder outside the checkout.

`build_wheel` builds from a copy of exactly what the Dockerfile's build stage COPYs (so a package
or data file the image lacks is missing here too), with `pip wheel --no-deps` in pip's build
isolation: pip fetches the [build-system] requirements (setuptools>=68) as `pip install .` in the
image does. (The test venv's own setuptools, 65.5, has no bdist_wheel, so --no-build-isolation
would need an extra `wheel` pin for the tests only.)

`install` is the Dockerfile's build stage on this machine: `python -m venv`, `pip install -r
requirements.lock`, `pip install --no-deps <wheel>`, `compileall`. Nothing is shared with the
test venv: no `--system-site-packages`, no .pth, no editable install, and every command runs with
a clean environment (no PYTHONPATH) from a folder outside the checkout. The locked dependencies
come from pip's configured indexes, as `./run setup` gets them; there is no shortcut (no
wheelhouse, no copied site-packages): measured 2-5 minutes here, depending on the machine's load.
The test session builds and installs once (the `installed_venv` fixture in tests/conftest.py);
the wheel test and the compose-stack test both run from it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tests.compose import DOCKERFILE, REPO, argv, dockerfile_instructions

INSTALL_TIMEOUT_S = 1200
# .dockerignore entries that can occur inside the COPYed folders.
IGNORED_INSIDE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")


@dataclass(frozen=True)
class InstalledVenv:
    root: Path
    wheel: Path
    build_s: float
    install_s: float

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    def env(self, *, home: Path, tmp: Path, **extra: str) -> dict[str, str]:
        """A clean environment: this venv first on PATH, then the system's; nothing inherited."""
        return {"PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home),
                "TMPDIR": str(tmp), "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1", **extra}


def _run(args: list[str | Path], *, cwd: Path, env: dict[str, str] | None = None,
         timeout_s: float = INSTALL_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout_s)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed ({result.returncode}) in {cwd}:\n"
                           f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def dockerfile_build_sources(dockerfile: str) -> list[tuple[str, str]]:
    """(repository path, path under the build WORKDIR) for each COPY of the Dockerfile's first
    stage, in order: what `pip install --no-deps .` in the image sees."""
    out, workdir, stage = [], "/", 0
    for instruction, args in dockerfile_instructions(dockerfile):
        if instruction == "FROM":
            stage += 1
            if stage > 1:
                break
        elif instruction == "WORKDIR":
            workdir = args.strip()
        elif instruction == "COPY":
            parts = argv(args)
            if any(p.startswith("--from") for p in parts):
                continue
            sources, dest = [p for p in parts[:-1] if not p.startswith("--")], parts[-1]
            dest = dest if dest.startswith("/") else f"{workdir.rstrip('/')}/{dest}"
            for src in sources:
                target = f"{dest.rstrip('/')}/{Path(src).name}" if (
                    dest.endswith("/") or len(sources) > 1) else dest
                out.append((src, os.path.relpath(target, workdir)))
    return out


def build_wheel(out_dir: Path, *, source_root: Path = REPO) -> Path:
    """The project wheel, built from a copy of what the Dockerfile's build stage copies."""
    src = out_dir / "src"
    src.mkdir(parents=True)
    for repo_path, rel in dockerfile_build_sources((source_root / DOCKERFILE.name).read_text()):
        origin, target = source_root / repo_path, src / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=IGNORED_INSIDE)
        else:
            shutil.copy2(origin, target)
    wheels = out_dir / "wheels"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, src], cwd=out_dir,
         env=env)
    (wheel,) = wheels.glob("*.whl")
    return wheel


def wheel_top_level(wheel: Path) -> set[str]:
    """Top-level import names in the wheel (folders with Python files, and single modules)."""
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if ".dist-info/" not in n]
    return {n.split("/")[0].removesuffix(".py") for n in names if n.endswith(".py")}


def wheel_files(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def install(root: Path, *, wheel: Path, lock: Path = REPO / "requirements.lock") -> Path:
    """A fresh venv at `root` with the locked dependencies and the wheel (not editable)."""
    base = getattr(sys, "_base_executable", sys.executable)
    work = root.parent
    _run([base, "-m", "venv", root], cwd=work)
    pip = [root / "bin" / "python", "-m", "pip", "--disable-pip-version-check"]
    # The test venv's environment may carry PYTHONPATH (a worktree): never let it leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    _run([*pip, "install", "-q", "-r", lock], cwd=work, env=env)
    _run([*pip, "install", "-q", "--no-deps", wheel], cwd=work, env=env)
    _run([root / "bin" / "python", "-m", "compileall", "-q", "-j", "0", root / "lib"], cwd=work,
         env=env)
    return root


def build_and_install(workdir: Path) -> InstalledVenv:
    started = time.monotonic()
    wheel = build_wheel(workdir / "build")
    built = time.monotonic()
    root = install(workdir / "venv", wheel=wheel)
    venv = InstalledVenv(root=root, wheel=wheel, build_s=built - started,
                         install_s=time.monotonic() - built)
    print(f"\nwheel {wheel.name}: {wheel.stat().st_size / 1e3:.0f} kB, built in {venv.build_s:.1f} s;"
          f" fresh venv with requirements.lock + wheel in {venv.install_s:.1f} s", file=sys.stderr)
    return venv
