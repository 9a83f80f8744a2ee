"""imagery_upload_sensor through Dagster's public API (build_sensor_context), local store."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from pipeline.partitions import imagery_batches
from pipeline.sensors import build_upload_sensor
from pipeline.uploads import ScanState, scan_uploads
from resources.object_store import ObjectStoreResource

BUCKET = "imagery-uploads"


@pytest.fixture
def resource(tmp_path) -> ObjectStoreResource:
    res = ObjectStoreResource(data_dir=str(tmp_path / "store"))
    res.store().ensure_bucket(BUCKET)
    return res


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def upload(store, batch_id: str, *, files=("a.tif",), manifest: dict | None = None, with_manifest=True):
    for name in files:
        store.put_bytes(BUCKET, f"{batch_id}/{name}", b"not read by the sensor")
    if with_manifest:
        body = manifest or {"schema_version": 1, "batch_id": batch_id, "images": [{"path": "a.tif"}]}
        store.put_bytes(BUCKET, f"{batch_id}/manifest.json", json.dumps(body).encode())


def tick(instance, resource, cursor=None) -> dg.SensorResult:
    sensor = build_upload_sensor(minimum_interval_seconds=30)
    context = dg.build_sensor_context(instance=instance, cursor=cursor,
                                      resources={"object_store": resource})
    result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def added_keys(result: dg.SensorResult) -> list[str]:
    return [k for req in result.dynamic_partitions_requests for k in req.partition_keys]


def test_sensor__new_batch_gives_one_partition_and_one_run(instance, resource):
    upload(resource.store(), "farm7-north-2026-06-14")
    result = tick(instance, resource)
    assert added_keys(result) == ["farm7-north-2026-06-14"]
    assert result.dynamic_partitions_requests[0].partitions_def_name == imagery_batches.name
    assert [r.partition_key for r in result.run_requests] == ["farm7-north-2026-06-14"]
    etag = resource.store().head(BUCKET, "farm7-north-2026-06-14/manifest.json").etag
    assert result.run_requests[0].run_key == f"farm7-north-2026-06-14:{etag}"


def test_sensor__second_tick_requests_nothing(instance, resource):
    upload(resource.store(), "b1")
    first = tick(instance, resource)
    second = tick(instance, resource, first.cursor)
    assert second.run_requests == [] and added_keys(second) == []


def test_sensor__replayed_tick_repeats_the_same_run_keys(instance, resource):
    """Dagster drops a run request whose run_key it has seen, so a replay launches nothing."""
    upload(resource.store(), "b1")
    first = tick(instance, resource)
    replay = tick(instance, resource, None)
    assert [r.run_key for r in replay.run_requests] == [r.run_key for r in first.run_requests]


def test_sensor__reuploaded_manifest_runs_again(instance, resource):
    store = resource.store()
    upload(store, "b1")
    first = tick(instance, resource)
    upload(store, "b1", manifest={"schema_version": 1, "batch_id": "b1",
                                  "images": [{"path": "a.tif"}], "auto_report": False})
    second = tick(instance, resource, first.cursor)
    assert added_keys(second) == []  # the partition exists already
    assert [r.partition_key for r in second.run_requests] == ["b1"]
    assert second.run_requests[0].run_key != first.run_requests[0].run_key
    assert tick(instance, resource, second.cursor).run_requests == []


def test_sensor__partial_upload_without_manifest_requests_nothing(instance, resource):
    upload(resource.store(), "in-progress", files=("a.tif", "b.tif"), with_manifest=False)
    result = tick(instance, resource)
    assert result.run_requests == [] and added_keys(result) == []
    upload(resource.store(), "in-progress", files=())  # the manifest arrives last
    later = tick(instance, resource, result.cursor)
    assert added_keys(later) == ["in-progress"]


@pytest.mark.parametrize("bad", ["bad id", "a,b", "-leading-dash", "x" * 101, "uni\u00e9", "a..b"])
def test_sensor__invalid_batch_id_is_logged_and_good_ones_proceed(instance, resource, capfd, bad):
    """The sensor context's log goes to the console (and to the tick's log in the UI)."""
    store = resource.store()
    upload(store, "good-1")
    upload(store, bad)
    upload(store, "good-2")
    result = tick(instance, resource)
    assert sorted(added_keys(result)) == ["good-1", "good-2"]
    assert sorted(r.partition_key for r in result.run_requests) == ["good-1", "good-2"]
    logged = capfd.readouterr().err
    assert f"Refused upload prefix {bad + '/'!r}" in logged
    # the refusal is remembered: logged once, never retried as a partition
    again = tick(instance, resource, result.cursor)
    assert again.run_requests == [] and "Refused" not in capfd.readouterr().err


def test_sensor__1500_objects_nothing_missed_nothing_twice(instance, resource):
    store = resource.store()
    batches = [f"batch-{i:04d}" for i in range(300)]
    for b in batches:
        upload(store, b, files=("t1.tif", "t2.tif", "t3.tif", "t4.tif"))  # 5 objects each
    assert sum(1 for _ in store.list_objects(BUCKET)) == 1500
    result = tick(instance, resource)
    assert sorted(added_keys(result)) == batches
    assert sorted(r.partition_key for r in result.run_requests) == batches
    assert tick(instance, resource, result.cursor).run_requests == []


def test_scan_uploads__rechecks_known_batches_in_bounded_slices(resource):
    store = resource.store()
    for b in ("a1", "a2", "a3", "a4", "a5"):
        upload(store, b)
    state = scan_uploads(store, BUCKET, ScanState(), recheck_budget=2).state
    upload(store, "a5", manifest={"schema_version": 1, "batch_id": "a5", "images": [{"path": "x.tif"}]})
    seen = []
    for _ in range(3):  # ceil(5 / 2) scans cover every known batch once
        result = scan_uploads(store, BUCKET, state, recheck_budget=2)
        seen += [f.batch_id for f in result.found]
        state = result.state
    assert seen == ["a5"]


def test_scan_uploads__cursor_round_trips():
    state = ScanState(known={"a": "e1"}, refused=["bad id/"], offset=3)
    assert ScanState.from_cursor(state.to_cursor()) == state
    assert ScanState.from_cursor(None) == ScanState()



@pytest.mark.parametrize("value", [None, "17"])
def test_sensor__code_location_ticks_at_the_configured_interval(monkeypatch, value):
    """IMAGERY_SENSOR_INTERVAL_S (unset: the settings' default) is the sensor's minimum interval
    in the code location the daemon loads; the sensor runs without an operator's click."""
    from pipeline.definitions import defs
    from pipeline.settings import Settings

    if value is None:
        monkeypatch.delenv("IMAGERY_SENSOR_INTERVAL_S", raising=False)
    else:
        monkeypatch.setenv("IMAGERY_SENSOR_INTERVAL_S", value)
    sensor = defs().get_sensor_def("imagery_upload_sensor")
    expected = Settings.from_env({}).sensor_interval_s if value is None else int(value)
    assert sensor.minimum_interval_seconds == expected
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
