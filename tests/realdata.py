"""Where the real imagery lives: ../shared/data/real next to the checkout, or the folder named by
IMAGERY_TEST_REAL_DATA. Tests take it through the `real_data` fixture (tests/conftest.py), which
skips them, saying why, when the folder is absent."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def real_data_dir() -> Path:
    return Path(os.environ.get("IMAGERY_TEST_REAL_DATA") or REPO.parent / "shared" / "data" / "real")


def absent_reason(folder: Path) -> str:
    return (f"real imagery not available: {folder} does not exist (it is shared next to the "
            "checkout as ../shared/data/real; IMAGERY_TEST_REAL_DATA may name another folder)")
