"""Write schemas/summary.schema.json from the pydantic model (pipeline.core.summary.Summary).

Run after any change to the model: `.venv/bin/python scripts/export_schema.py`. A test fails while
the committed file differs from what this writes. `--check` exits 1 instead of writing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "summary.schema.json"


def render() -> str:
    from pipeline.core.summary import summary_json_schema

    return json.dumps(summary_json_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = SCHEMA_PATH.read_text() if SCHEMA_PATH.exists() else ""
        if current != text:
            print(f"{SCHEMA_PATH} is out of date; run scripts/export_schema.py", file=sys.stderr)
            return 1
        return 0
    SCHEMA_PATH.parent.mkdir(parents=True, exist_ok=True)
    SCHEMA_PATH.write_text(text)
    print(f"wrote {SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(SCHEMA_PATH.parent.parent))
    raise SystemExit(main(sys.argv[1:]))
