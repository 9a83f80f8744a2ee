"""Contender: the whole Dagster job on the embedded default -- a sensor tick + `process_imagery_batch`.

The bench input is placed as one batch in a local object store (a hard link when it can be, so
the setup costs nothing), with a manifest naming its five bands, and a fresh SQLite instance.
Timed ("work"): the sensor tick that finds the batch, and the job run (every asset of the batch:
validation, mosaic, indices, heatmaps, statistics, zones, report, distribution), in this one
process -- so the peak RSS is the run worker's, not only the analysis function's.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from bench.contenders._common import BANDS, REFLECTANCE_SCALE, Phases, parse

BATCH_ID = "bench-2026-06-14"


def _place(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def main() -> None:
    args = parse(__doc__.splitlines()[0])
    data, home = args.out / "store", args.out / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    os.environ.update({"IMAGERY_DATA_DIR": str(data), "DAGSTER_HOME": str(home)})
    import dagster as dg

    from pipeline.definitions import defs as load_defs
    from pipeline.demo import sensor_tick
    from resources.object_store import ObjectStoreResource

    definitions = load_defs()
    object_store = ObjectStoreResource.from_env()
    store = object_store.store()
    for bucket in (object_store.imagery_bucket, object_store.heatmap_bucket,
                   object_store.report_bucket):
        store.ensure_bucket(bucket)
    _place(args.input, data / object_store.imagery_bucket / BATCH_ID / "ortho.tif")
    manifest = {"schema_version": 1, "batch_id": BATCH_ID, "captured_at": "2026-06-14T10:32:00Z",
                "images": [{"path": "ortho.tif", "bands": list(BANDS)}],
                "reflectance_scale": REFLECTANCE_SCALE, "auto_report": True}
    (data / object_store.imagery_bucket / BATCH_ID / "manifest.json").write_text(
        json.dumps(manifest))

    phases = Phases()  # the clock starts here: sensor tick + run
    with dg.DagsterInstance.get() as instance:
        request = sensor_tick(definitions, instance, BATCH_ID)
        phases.mark("sensor")
        job = definitions.resolve_job_def("process_imagery_batch")
        t0 = time.monotonic()
        run = job.execute_in_process(instance=instance, partition_key=BATCH_ID,
                                     tags=request.tags, raise_on_error=False)
        phases.mark("job")
        if not run.success:
            raise SystemExit(f"the job failed after {time.monotonic() - t0:.1f} s")
        files = [info.key for bucket in (object_store.heatmap_bucket, object_store.report_bucket)
                 for info in store.list_objects(bucket, prefix=f"{BATCH_ID}/")]
    phases.done(files=len(files))


if __name__ == "__main__":
    main()
