"""Sensor tick cost vs bucket size: `pipeline.uploads.scan_uploads` against SeaweedFS.

1,000 known batches hold 10,000 objects, then 100,000 (tiny objects, uploaded by a thread pool);
ticks are measured with 0, 10 and 100 new batches. The design lists batch prefixes with a
delimiter (1 LIST page per 1,000 batches, whatever each holds) and HEADs only new prefixes plus a
fixed re-upload budget (200), so a tick should grow with new batches, not with the bucket.

    .venv/bin/python -m bench.ops_sensor            # ~5 min; JSON in bench/work/ops_sensor.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pipeline.uploads import ScanState, scan_uploads
from resources.object_store import ObjectStoreResource
from tests.servers import seaweedfs

KNOWN = 1000
WORK = Path(__file__).resolve().parent / "work"


class CountingStore:
    """Counts the requests a scan makes (LIST pages are counted as calls of list_prefixes)."""

    def __init__(self, store) -> None:
        self.store, self.heads, self.lists = store, 0, 0

    def list_prefixes(self, *args, **kwargs):
        self.lists += 1
        return self.store.list_prefixes(*args, **kwargs)

    def head(self, *args, **kwargs):
        self.heads += 1
        return self.store.head(*args, **kwargs)


def _put_all(client, bucket: str, keys: list[str], *, threads: int = 32) -> float:
    t0 = time.monotonic()

    def put(key: str) -> None:
        client.put_object(Bucket=bucket, Key=key, Body=b"{}" if key.endswith(".json") else b"x")

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, keys))
    return time.monotonic() - t0


def _batch_keys(batch_id: str, files: int, *, first: int = 0, manifest: bool = True) -> list[str]:
    keys = [f"{batch_id}/tile_{i:03d}.tif" for i in range(first, first + files)]
    return keys + ([f"{batch_id}/manifest.json"] if manifest else [])


def _tick(store, bucket: str, state: ScanState) -> tuple[float, ScanState, int, int]:
    counting = CountingStore(store)
    t0 = time.monotonic()
    result = scan_uploads(counting, bucket, state)
    return time.monotonic() - t0, result.state, len(result.found), counting.heads


def run(*, repeats: int = 3) -> list[dict]:
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp, seaweedfs(Path(tmp) / "weed") as server:
        client = server.client(max_pool_connections=64)
        bucket = server.create_bucket("imagery-uploads-bench")
        store = ObjectStoreResource(endpoint_url=server.endpoint_url, access_key=server.access_key,
                                    secret_key=server.secret_key, region=server.region).store()
        known = [f"farm-{i:05d}" for i in range(KNOWN)]
        seconds = _put_all(client, bucket, [k for b in known for k in _batch_keys(b, 9)])
        print(f"uploaded {KNOWN * 10} objects in {seconds:.0f} s")
        cold, state, found, heads = _tick(store, bucket, ScanState())
        assert found == KNOWN, found
        rows.append({"objects": KNOWN * 10, "new": KNOWN, "tick_s": cold, "heads": heads,
                     "note": "first scan (cold cursor)"})
        new_id = 0
        for objects, extra in ((10_000, 0), (100_000, 90)):
            if extra:
                seconds = _put_all(client, bucket, [k for b in known for k in _batch_keys(
                    b, extra, first=9, manifest=False)])
                print(f"uploaded {KNOWN * extra} more objects in {seconds:.0f} s")
            for new in (0, 10, 100):
                times, heads_seen = [], []
                for _ in range(repeats if new == 0 else 1):
                    ids = [f"new-{new_id + i:05d}" for i in range(new)]
                    new_id += new
                    _put_all(client, bucket, [k for b in ids for k in _batch_keys(b, 9)])
                    seconds, state, found, heads = _tick(store, bucket, state)
                    assert found == new, (found, new)
                    times.append(seconds)
                    heads_seen.append(heads)
                rows.append({"objects": objects, "new": new, "tick_s": statistics.median(times),
                             "heads": heads_seen[0], "known": len(state.known)})
                print(rows[-1])
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| objects in bucket | known batches | new batches | tick (s) | HEADs |",
             "| ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        known = r.get("known", 0) - r["new"] if "known" in r else 0
        label = f" ({r['note']})" if "note" in r else ""
        lines.append(f"| {r['objects']:,} | {known:,} | {r['new']}{label} | {r['tick_s']:.2f} | "
                     f"{r['heads']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = run(repeats=args.repeats)
    WORK.mkdir(exist_ok=True)
    (WORK / "ops_sensor.json").write_text(json.dumps(rows, indent=1))
    print(markdown(rows))


if __name__ == "__main__":
    main()
