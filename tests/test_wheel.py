"""The package as it ships: the wheel built from what the Dockerfile copies carries every package
and data file of the source tree and nothing else, and once installed (not editable) into a fresh
venv with requirements.lock it works from a folder outside the checkout: the code location loads
and the embedded-default demo processes one batch to its report.

How the venv is made, and why that is an honest install, is in tests/installed.py (the
`installed_venv` session fixture: `python -m venv`, `pip install -r requirements.lock`, `pip
install --no-deps <wheel>`, as the Dockerfile does; pip's download cache is the only speed-up).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from pypdf import PdfReader

from tests.installed import InstalledVenv, wheel_files, wheel_top_level

# The first test to use `installed_venv` pays for the venv (minutes; pytest-timeout counts
# fixture set-up), so these get more than the suite's 600 s.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("pipeline", "assets", "resources")
BATCH = "wheel-farm-2026-06-14"


def source_files(top: str) -> set[str]:
    """Files under a shipped top-level package, as wheel paths (bytecode caches excluded)."""
    return {p.relative_to(REPO).as_posix() for p in (REPO / top).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def run(venv: InstalledVenv, args: list[str], *, cwd: Path, env: dict[str, str],
        timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv.bin / args[0]), *args[1:]], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout_s)


def test_wheel__carries_every_file_of_the_shipped_packages_and_nothing_else(
        installed_venv: InstalledVenv) -> None:
    assert wheel_top_level(installed_venv.wheel) == set(SHIPPED)
    shipped = wheel_files(installed_venv.wheel)
    missing = sorted(f for top in SHIPPED for f in source_files(top) - shipped)
    assert missing == [], f"the wheel lacks (check [tool.setuptools] in pyproject.toml): {missing}"
    assert {"pipeline/storage/s3.py", "pipeline/cli/app.py", "resources/object_store.py"} <= shipped


def test_wheel__installed_outside_the_checkout_loads_and_processes_a_batch(
        installed_venv: InstalledVenv, tmp_path: Path) -> None:
    work, home, tmp = tmp_path / "elsewhere", tmp_path / "home", tmp_path / "tmp"
    for folder in (work, home, tmp, tmp_path / "dagster_home"):
        folder.mkdir()
    assert not work.is_relative_to(REPO)
    env = installed_venv.env(home=home, tmp=tmp, DAGSTER_HOME=str(tmp_path / "dagster_home"))

    where = run(installed_venv, ["python", "-c", "import assets, pipeline, resources.object_store as o;"
                                 "print(pipeline.__file__, assets.__file__, o.__file__)"],
                cwd=work, env=env)
    assert where.returncode == 0, where.stderr
    site = installed_venv.root / "lib"
    assert all(Path(f).is_relative_to(site) for f in where.stdout.split()), where.stdout

    validate = run(installed_venv, ["dagster", "definitions", "validate", "-m",
                                    "pipeline.definitions"], cwd=work, env=env)
    assert validate.returncode == 0, validate.stdout[-3000:] + validate.stderr[-5000:]

    demo = run(installed_venv, ["imagery-pipeline", "demo", "--data-dir", "data", "--batch-id", BATCH,
                                "--json"], cwd=work, env=env)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-5000:]
    result = json.loads(demo.stdout)
    assert result["success"] and result["batch_id"] == BATCH
    reports = work / "data" / "reports" / BATCH
    summary = json.loads((reports / "summary.json").read_text())
    assert summary["batch_id"] == BATCH
    assert len(PdfReader(reports / "report.pdf").pages) >= 1
    assert (work / "data" / "analysis-heatmaps" / BATCH / "ndvi.tif").stat().st_size > 0
