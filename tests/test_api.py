"""The HTTP API of DESIGN.md §6 against the embedded default (local store, SQLite instance):
every route, its auth, its errors. The S3 + Postgres path is in test_api_s3.py, the viewer in a
real browser in test_api_browser.py."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import rasterio
from fastapi.testclient import TestClient
from PIL import Image
from pyproj import Transformer

from pipeline.core.ramps import colour_table
from pipeline.core.registry import CHANGE_SCALE, INDICES, THERMAL_SCALE
from pipeline.storage import LocalObjectStore
from tests.api_world import (AUTH, DIGEST, TOKEN, local_store, make_app, open_instance,
                             tile_of, tile_pixel_lonlat)



def design_index(v: float, scale) -> int:
    """DESIGN.md §3.1 written out here, independently of the code under test, in Python floats
    (float64): 1 + min(floor((clip(v, vmin, vmax) - vmin) / (vmax - vmin) * 255), 254) for a
    finite v, 0 (transparent) otherwise."""
    if not math.isfinite(v):
        return 0
    clipped = min(max(v, scale.vmin), scale.vmax)
    return 1 + min(math.floor((clipped - scale.vmin) / (scale.vmax - scale.vmin) * 255), 254)


@pytest.fixture
def client(processed):
    instance = open_instance(processed)
    with TestClient(make_app(local_store(processed), instance=instance),
                    raise_server_exceptions=False) as c:
        yield c
    instance.dispose()


@pytest.fixture
def empty(tmp_path):
    store = LocalObjectStore(root=tmp_path / "data")
    for bucket in ("imagery-uploads", "analysis-heatmaps", "reports"):
        store.ensure_bucket(bucket)
    with TestClient(make_app(store), raise_server_exceptions=False) as c:
        yield c, store, tmp_path / "data"


def _files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
                  and ".staging" not in p.parts)


def _upload_body(batch_id: str, *, size: int = 5) -> dict:
    return {"schema_version": 1, "batch_id": batch_id, "captured_at": "2026-06-14T10:32:00Z",
            "images": [{"path": "ortho.tif", "bands": ["red", "nir"]}],
            "zones": "fields.geojson",
            "files": [{"path": "ortho.tif", "size": size}, {"path": "fields.geojson", "size": 3}]}


def _png(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGBA"))


PROTECTED = [
    ("POST", "/imagery", _upload_body("no-auth-1")),
    ("POST", "/imagery/no-auth-1/complete", None),
    ("GET", "/imagery/demo-farm-2026-06-14", None),
    ("GET", "/analysis-runs?batch_id=demo-farm-2026-06-14", None),
    ("POST", "/analysis-runs", {"batch_id": "demo-farm-2026-06-14"}),
    ("GET", "/reports/demo-farm-2026-06-14", None),
    ("GET", "/tiles/demo-farm-2026-06-14/ndvi/16/35495/23072.png", None),
    ("GET", "/metrics", None),
    ("GET", "/openapi.json", None),
    ("GET", "/docs", None),
    ("GET", "/redoc", None),
]
# Bodies a route would refuse (422, 413) if it read them: without a token it must not (§6).
MALFORMED = [
    ("POST", "/imagery", b"{not json"),
    ("POST", "/imagery", b"1"),
    ("POST", "/imagery", b"{" + b" " * 1_100_000 + b"}"),
    ("POST", "/imagery", json.dumps({"not": "a manifest"}).encode()),
    ("POST", "/analysis-runs", b"[1, 2"),
    ("POST", "/analysis-runs", json.dumps({"batch_id": "../x"}).encode()),
    ("POST", "/imagery/..x/complete", b""),
    ("GET", "/tiles/..x/ndvi/99/-1/0.png", b""),
]
MAP_ROUTES = ["/map/demo-farm-2026-06-14", "/map/demo-farm-2026-06-14/data.json"]
UNAUTHENTICATED = [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                   {"Authorization": f"Bearer {DIGEST}"}]
UNAUTHENTICATED_IDS = ["none", "wrong", "not-bearer", "the-digest"]


def test_api__healthz_needs_no_token(empty):
    c, _, _ = empty
    assert c.get("/healthz").json() == {"ok": True}


@pytest.mark.parametrize("headers", UNAUTHENTICATED, ids=UNAUTHENTICATED_IDS)
def test_api__every_route_without_a_valid_token_is_401_and_writes_nothing(empty, headers):
    c, _, root = empty
    c.post("/imagery", json=_upload_body("prepared"), headers=AUTH)  # one pending upload
    before = _files(root)
    for method, url, body in PROTECTED + [("POST", "/imagery/prepared/complete", None)]:
        response = c.request(method, url, json=body, headers=headers)
        assert response.status_code == 401, (method, url, response.text)
        assert set(response.json()) == {"detail"}
        assert "Bearer" in response.headers["www-authenticate"]
    for method, url, content in MALFORMED:
        response = c.request(method, url, content=content,
                             headers={**headers, "Content-Type": "application/json"})
        assert response.status_code == 401, (method, url, content[:20], response.text)
        assert set(response.json()) == {"detail"} and "Bearer" in response.json()["detail"]
    assert _files(root) == before


@pytest.mark.parametrize("headers", UNAUTHENTICATED, ids=UNAUTHENTICATED_IDS)
def test_api__every_map_route_without_a_valid_token_redirects_to_login(empty, headers):
    c, _, _ = empty
    for url in MAP_ROUTES:
        response = c.get(url, headers=headers, follow_redirects=False)
        assert response.status_code == 303, (url, response.text)
        assert response.headers["location"] == "/login?next=%2Fmap%2Fdemo-farm-2026-06-14"


def test_api__without_configured_tokens_everything_but_healthz_is_refused(tmp_path):
    store = LocalObjectStore(root=tmp_path)
    store.ensure_bucket("imagery-uploads")
    from pipeline.api import ApiConfig, create_app

    c = TestClient(create_app(config=ApiConfig(token_digests=()), store=store))
    assert c.get("/healthz").status_code == 200
    response = c.post("/imagery", json=_upload_body("b1"), headers=AUTH)
    assert response.status_code == 401
    assert "IMAGERY_API_TOKENS_SHA256" in response.json()["detail"]
    assert c.post("/login", data={"token": TOKEN}, follow_redirects=False).status_code == 401


def test_api__upload_put_complete_writes_the_manifest_last(empty):
    c, store, _ = empty
    created = c.post("/imagery", json=_upload_body("field-7.2026", size=5), headers=AUTH)
    assert created.status_code == 201, created.text
    uploads = {u["path"]: u for u in created.json()["uploads"]}
    assert set(uploads) == {"ortho.tif", "fields.geojson"}
    assert all(u["method"] == "PUT" and u["headers"] == {} for u in uploads.values())
    assert c.get("/imagery/field-7.2026", headers=AUTH).json()["state"] == "uploading"

    # Nothing uploaded yet: 409 naming both files; no manifest.
    incomplete = c.post("/imagery/field-7.2026/complete", headers=AUTH)
    assert incomplete.status_code == 409
    assert "ortho.tif is missing" in incomplete.json()["detail"]
    assert "fields.geojson is missing" in incomplete.json()["detail"]
    assert c.put(uploads["ortho.tif"]["url"], content=b"12345").status_code == 200
    # A wrong size is refused by the signed URL itself; the declared one is accepted.
    assert c.put(uploads["fields.geojson"]["url"], content=b"{}").status_code == 400
    assert c.put(uploads["fields.geojson"]["url"], content=b"{}  ").status_code == 413
    still = c.post("/imagery/field-7.2026/complete", headers=AUTH)
    assert still.status_code == 409 and "fields.geojson is missing" in still.json()["detail"]
    assert "ortho.tif" not in still.json()["detail"]
    assert store.head("imagery-uploads", "field-7.2026/manifest.json") is None
    assert c.put(uploads["fields.geojson"]["url"], content=b"{} ").status_code == 200

    done = c.post("/imagery/field-7.2026/complete", headers=AUTH)
    assert done.status_code == 202, done.text
    keys = sorted(o.key for o in store.list_objects("imagery-uploads", prefix="field-7.2026/"))
    assert keys == ["field-7.2026/fields.geojson", "field-7.2026/manifest.json",
                    "field-7.2026/ortho.tif"]
    manifest = json.loads(store.get_bytes("imagery-uploads", "field-7.2026/manifest.json"))
    assert manifest["batch_id"] == "field-7.2026" and "files" not in manifest
    assert manifest["images"] == [{"path": "ortho.tif", "bands": ["red", "nir"]}]
    manifest_time = store.head("imagery-uploads", "field-7.2026/manifest.json").last_modified
    assert all(store.head("imagery-uploads", k).last_modified <= manifest_time for k in keys)
    assert c.get("/imagery/field-7.2026", headers=AUTH).json()["state"] == "queued"
    # A second POST for a complete batch is a conflict, not an overwrite.
    assert c.post("/imagery", json=_upload_body("field-7.2026"), headers=AUTH).status_code == 409


def test_api__a_presigned_url_for_another_key_is_refused_by_the_store(empty):
    c, store, root = empty
    url = c.post("/imagery", json=_upload_body("batch-a"), headers=AUTH).json()["uploads"][0]["url"]
    before = _files(root)
    for forged in (url.replace("/batch-a/", "/batch-b/"),
                   url.replace("/imagery-uploads/", "/reports/"),
                   url.replace("ortho.tif", "manifest.json"),
                   url.replace("size=5", "size=6"),
                   url.split("?")[0]):
        response = c.put(forged, content=b"12345")
        assert response.status_code == 403, (forged, response.text)
        assert response.json()["detail"]
    assert _files(root) == before


def test_api__an_expired_presigned_url_is_refused(empty):
    c, store, root = empty
    path = store.signed_path("PUT", "imagery-uploads", "b-1/ortho.tif", expires_s=-1, size=5)
    response = c.put(f"/{path}", content=b"12345")
    assert response.status_code == 403 and "expired" in response.json()["detail"]
    assert _files(root) == []


@pytest.mark.parametrize("signature", ["%C3%A9", "%E2%82%AC" * 32, "%00", "%ED%A0%80",
                                       "g" * 64, "A" * 64, "", "0" * 65])
def test_api__a_garbage_signature_is_403_not_an_error(empty, signature):
    c, store, root = empty
    for method, bucket in (("GET", "reports"), ("PUT", "imagery-uploads")):
        store.put_bytes("reports", "b-1/report.pdf", b"%PDF-")
        path = store.signed_path(method, bucket, "b-1/report.pdf", expires_s=60, size=5)
        forged = path.split("signature=")[0] + f"signature={signature}"
        response = c.request(method, f"/{forged}", content=b"12345" if method == "PUT" else None)
        assert response.status_code == 403, (method, signature, response.text)
        assert "signature" in response.json()["detail"]
    assert store.head("imagery-uploads", "b-1/report.pdf") is None


def test_local_store__verify_signed_refuses_a_non_ascii_signature_as_access_denied(tmp_path):
    from pipeline.storage import AccessDenied

    store = LocalObjectStore(root=tmp_path)
    store.ensure_bucket("reports")
    path = store.signed_path("GET", "reports", "b/r.pdf", expires_s=60)
    expires = path.split("expires=")[1].split("&")[0]
    for signature in ("é", "\udcff" * 64, "€" * 64):
        with pytest.raises(AccessDenied, match="signature"):
            store.verify_signed("GET", "reports", "b/r.pdf", expires=expires, signature=signature)
    for expires_text in ("²", "1²", "-1", ""):
        with pytest.raises(AccessDenied, match="expires"):
            store.verify_signed("GET", "reports", "b/r.pdf", expires=expires_text,
                                signature="0" * 64)


@pytest.mark.parametrize("url", ["/imagery/..x", "/imagery/a..b", "/imagery/-lead",
                                 "/imagery/x%2F..%2Fy", "/reports/..", "/imagery/" + "a" * 101,
                                 "/tiles/..x/ndvi/1/0/0.png", "/analysis-runs?batch_id=a..b"])
def test_api__bad_batch_ids_are_422_naming_the_field(empty, url):
    c, _, _ = empty
    response = c.get(url, headers=AUTH)
    assert response.status_code in (404, 422), response.text
    if response.status_code == 422:
        assert "batch_id" in response.json()["detail"]


@pytest.mark.parametrize(("change", "field"), [
    ({"batch_id": "../etc"}, "batch_id"),
    ({"images": [{"path": "../ortho.tif"}]}, "images.0.path"),
    ({"images": [{"path": "/abs/ortho.tif"}]}, "images.0.path"),
    ({"images": [{"path": "ortho.tif", "bands": ["ultraviolet"]}]}, "images.0.bands"),
    ({"files": [{"path": "ortho.tif", "size": -1}]}, "files.0.size"),
    ({"files": [{"path": "fields.geojson", "size": 3}]}, "files"),
    ({"files": [{"path": "ortho.tif", "size": 1}, {"path": "fields.geojson", "size": 1},
                {"path": "manifest.json", "size": 1}]}, "files"),
    ({"webhook": "http://example.com"}, "webhook"),
    ({"schema_version": 2}, "schema_version"),
])
def test_api__an_invalid_upload_is_422_naming_the_field_and_writes_nothing(empty, change, field):
    c, _, root = empty
    response = c.post("/imagery", json={**_upload_body("b-1"), **change}, headers=AUTH)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert f"`{field}`" in detail and "Traceback" not in detail
    assert _files(root) == []


def test_api__oversized_and_malformed_bodies_are_refused(empty):
    c, _, root = empty
    big = c.post("/imagery", content=b"{" + b" " * 1_100_000 + b"}", headers={
        **AUTH, "Content-Type": "application/json"})
    assert big.status_code == 413 and "bytes" in big.json()["detail"]
    bad = c.post("/imagery", content=b"{not json", headers={**AUTH,
                                                             "Content-Type": "application/json"})
    assert bad.status_code == 422 and "JSON" in bad.json()["detail"]
    assert _files(root) == []


def test_api__complete_without_an_upload_is_404(empty):
    c, _, _ = empty
    response = c.post("/imagery/never-started/complete", headers=AUTH)
    assert response.status_code == 404 and "POST /imagery" in response.json()["detail"]


def test_api__state_and_runs_come_from_the_instance(client, processed):
    demo = client.get(f"/imagery/{processed.demo}", headers=AUTH).json()
    assert demo["state"] == "succeeded" and demo["reason"] is None
    assert [r["status"] for r in demo["runs"]] == ["SUCCESS"]
    refused = client.get(f"/imagery/{processed.refused}", headers=AUTH).json()
    assert refused["state"] == "refused"
    assert "ortho_west.tif" in refused["reason"] and "sha256" in refused["reason"]
    runs = client.get(f"/analysis-runs?batch_id={processed.refused}", headers=AUTH).json()["runs"]
    assert len(runs) == 1 and runs[0]["status"] == "FAILURE"
    assert runs[0]["started_at"] <= runs[0]["ended_at"]
    assert "refused" in runs[0]["failure"]
    assert client.get("/imagery/no-such-batch", headers=AUTH).status_code == 404
    assert client.get("/analysis-runs?batch_id=no-such-batch", headers=AUTH).json() == {"runs": []}


def test_api__reprocessing_an_unknown_batch_is_404_and_without_dagster_url_503(client, processed):
    unknown = client.post("/analysis-runs", json={"batch_id": "no-such-batch"}, headers=AUTH)
    assert unknown.status_code == 404
    known = client.post("/analysis-runs", json={"batch_id": processed.demo}, headers=AUTH)
    assert known.status_code == 503 and "IMAGERY_API_DAGSTER_URL" in known.json()["detail"]
    extra = client.post("/analysis-runs", json={"batch_id": processed.demo, "x": 1}, headers=AUTH)
    assert extra.status_code == 422 and "`x`" in extra.json()["detail"]


def test_api__report_gives_the_summary_and_working_links(client, processed):
    response = client.get(f"/reports/{processed.demo}", headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    summary = json.loads((processed.data_dir / "reports" / processed.demo / "summary.json")
                         .read_text())
    assert body["summary"] == summary
    heatmaps = processed.data_dir / "analysis-heatmaps" / processed.demo
    expected = {"report.pdf"} | {p.name for p in heatmaps.iterdir() if p.suffix in (".tif", ".png")}
    assert set(body["links"]) == expected
    pdf = client.get(body["links"]["report.pdf"])  # the signature is the authorisation
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    forged = body["links"]["ndvi.tif"].replace("ndvi.tif", "evi.tif")
    assert client.get(forged).status_code == 403
    assert client.get(f"/reports/{processed.refused}", headers=AUTH).status_code == 404


def _ndvi_around(processed, lon: float, lat: float) -> np.ndarray:
    """The NDVI pixels whose centres surround (lon, lat): a 3×3 window (bilinear uses 2×2)."""
    path = processed.data_dir / "analysis-heatmaps" / processed.demo / "ndvi.tif"
    with rasterio.open(path) as src:
        x, y = Transformer.from_crs("EPSG:4326", src.crs, always_xy=True).transform(lon, lat)
        row, col = src.index(x, y)
        window = rasterio.windows.Window(col - 1, row - 1, 3, 3)
        return src.read(1, window=window, boundless=True, fill_value=np.nan)


def test_api__tiles_use_the_fixed_scale_and_are_transparent_outside(client, processed):
    summary = client.get(f"/reports/{processed.demo}", headers=AUTH).json()["summary"]
    with rasterio.open(processed.data_dir / "analysis-heatmaps" / processed.demo
                       / "ndvi.tif") as src:
        from rasterio.warp import transform_bounds

        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    z = 18
    x, y = tile_of((west + east) / 2, (south + north) / 2, z)
    tile = _png(client.get(f"/tiles/{processed.demo}/ndvi/{z}/{x}/{y}.png", headers=AUTH))
    assert tile.shape == (256, 256, 4) and (tile[..., 3] == 255).mean() > 0.5
    table = colour_table(INDICES["ndvi"].scale.ramp)
    assert summary["indices"]["ndvi"]["scale"] == INDICES["ndvi"].scale.as_dict()
    checked = 0
    for px, py in [(40, 40), (128, 128), (200, 60), (60, 210)]:
        around = _ndvi_around(processed, *tile_pixel_lonlat(z, x, y, px + 0.5, py + 0.5))
        if not np.isfinite(around).all():
            continue  # at the data's edge
        # Bilinear resampling gives a value between the neighbouring pixels' extremes, so the
        # tile's colour is a palette entry between theirs.
        low, high = (design_index(float(v), INDICES["ndvi"].scale)
                     for v in (np.min(around), np.max(around)))
        matches = [p for p in range(1, 256) if (table[p] == tile[py, px]).all()]
        assert any(low <= p <= high for p in matches), (around, tile[py, px], matches)
        checked += 1
    assert checked >= 3
    far = _png(client.get(f"/tiles/{processed.demo}/ndvi/{z}/{x + 500}/{y}.png", headers=AUTH))
    assert far.shape == (256, 256, 4) and not far[..., 3].any()
    low = _png(client.get(f"/tiles/{processed.demo}/thermal/12/{x >> 6}/{y >> 6}.png",
                          headers=AUTH))
    assert 0 < (low[..., 3] > 0).sum() < 256 * 256  # a zoomed-out tile reads the overviews
    assert client.get(f"/tiles/{processed.demo}/nope/{z}/{x}/{y}.png",
                      headers=AUTH).status_code == 404
    assert client.get(f"/tiles/{processed.demo}/change_ndvi/{z}/{x}/{y}.png",
                      headers=AUTH).status_code == 404
    assert client.get(f"/tiles/no-such-batch/ndvi/{z}/{x}/{y}.png", headers=AUTH).status_code == 404
    out_of_range = client.get(f"/tiles/{processed.demo}/ndvi/2/4/0.png", headers=AUTH)
    assert out_of_range.status_code == 422 and "`x`" in out_of_range.json()["detail"]


def test_api__map_redirects_to_login_and_the_cookie_replaces_the_token(client, processed):
    page = client.get(f"/map/{processed.demo}", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login?next=")
    form = client.get("/login")
    assert form.status_code == 200 and 'name="token"' in form.text
    wrong = client.post("/login", data={"token": "nope", "next": f"/map/{processed.demo}"},
                        follow_redirects=False)
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    right = client.post("/login", data={"token": TOKEN, "next": f"/map/{processed.demo}"},
                        follow_redirects=False)
    assert right.status_code == 303 and right.headers["location"] == f"/map/{processed.demo}"
    cookie = right.headers["set-cookie"]
    assert cookie.startswith("imagery_session=") and "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower()
    value = client.cookies["imagery_session"]
    assert TOKEN not in value and DIGEST not in value
    assert client.get(f"/imagery/{processed.demo}").status_code == 200  # cookie, no header
    viewer = client.get(f"/map/{processed.demo}")
    assert viewer.status_code == 200 and "/static/leaflet/leaflet.js" in viewer.text
    assert "default-src 'self'" in viewer.headers["content-security-policy"]
    data = client.get(f"/map/{processed.demo}/data.json").json()
    assert [l["name"] for l in data["layers"]][0] == "ndvi"
    assert {"thermal", "evi"} <= {l["name"] for l in data["layers"]}
    assert data["previous"] is None and data["area_unit"] == "ha"
    summary = client.get(f"/reports/{processed.demo}").json()["summary"]
    for zone in summary["zones"]:
        assert data["field_stats"][zone["name"]]["area"] == pytest.approx(zone["area_m2"] / 1e4)
    assert {f["properties"]["name"] for f in data["fields"]["features"]} \
        == {z["name"] for z in summary["zones"]}
    client.cookies.set("imagery_session", value[:-1] + ("0" if value[-1] != "0" else "1"))
    assert client.get(f"/imagery/{processed.demo}").status_code == 401
    # Only this service's /map/ pages are followed after sign-in.
    client.cookies.clear()
    away = client.post("/login", data={"token": TOKEN, "next": "https://evil.example/"},
                       follow_redirects=False)
    assert away.headers["location"] == "/"


def test_api__static_files_need_no_token(empty):
    c, _, _ = empty
    assert c.get("/static/leaflet/leaflet.js").status_code == 200
    assert "BSD" in c.get("/static/leaflet/LICENSE").text or "Copyright" in c.get(
        "/static/leaflet/LICENSE").text


def test_api__metrics_count_requests_by_route_and_status_and_batches(client, processed):
    client.get(f"/imagery/{processed.demo}", headers=AUTH)
    client.get("/imagery/..x", headers=AUTH)
    text = client.get("/metrics", headers=AUTH).text
    assert ('imagery_api_requests_total{method="GET",route="/imagery/{batch_id}",status="200"} 1.0'
            in text)
    assert 'route="/imagery/{batch_id}",status="422"' in text
    assert 'imagery_batches{outcome="succeeded"} 1.0' in text
    assert 'imagery_batches{outcome="final_failure"} 1.0' in text
    assert "imagery_run_duration_seconds_count 2.0" in text
    summary = client.get(f"/reports/{processed.demo}", headers=AUTH).json()["summary"]
    pixels = summary["grid"]["width"] * summary["grid"]["height"]
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
              if line and not line.startswith("#")}
    assert values["imagery_pixels_processed_total"] == pixels


def test_api__errors_are_json_without_a_stack_trace(client, processed, tmp_path):
    summary = processed.data_dir / "reports" / processed.demo / "summary.json"
    saved = summary.read_bytes()
    try:
        summary.write_bytes(b"{broken")
        response = client.get(f"/reports/{processed.demo}", headers=AUTH)
    finally:
        summary.write_bytes(saved)
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error; the server log has the details"}
    assert 'route="/reports/{batch_id}",status="500"' in client.get("/metrics", headers=AUTH).text
    assert client.get("/nowhere", headers=AUTH).json() == {"detail": "Not Found"}


def test_api__openapi_documents_every_route_and_needs_a_token(empty):
    c, _, _ = empty
    refused = c.get("/openapi.json")
    assert refused.status_code == 401 and set(refused.json()) == {"detail"}
    paths = c.get("/openapi.json", headers=AUTH).json()["paths"]
    for route in ("/imagery", "/imagery/{batch_id}/complete", "/imagery/{batch_id}",
                  "/analysis-runs", "/reports/{batch_id}",
                  "/tiles/{batch_id}/{layer}/{z}/{x}/{y}.png", "/map/{batch_id}", "/metrics",
                  "/healthz", "/login"):
        assert route in paths, route
    schema = paths["/imagery"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert schema["$ref"].endswith("ImageryCreate")
    # No interactive documentation pages (they would load scripts from a CDN).
    assert c.get("/docs", headers=AUTH).status_code == 404
    assert c.get("/redoc", headers=AUTH).status_code == 404


def _write_cog(path, data, *, nodata, colormap=None) -> None:
    from rasterio.transform import from_origin

    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "COG", "width": data.shape[1], "height": data.shape[0], "count": 1,
               "dtype": data.dtype.name, "crs": "EPSG:32633", "nodata": nodata,
               "transform": from_origin(500_000.0, 5_300_000.0, 0.5, 0.5)}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
        if colormap:
            dst.write_colormap(1, colormap)


def test_api__change_and_zone_layers_render_their_values_exactly(empty):
    """Synthetic layers: a constant change of +0.25 in the west half (NaN in the east), and
    management-zone classes 1 (north) and 2 (south) with their own colour table."""
    c, _, root = empty
    change = np.full((256, 256), np.nan, dtype=np.float32)
    change[:, :128] = 0.25
    zones = np.ones((256, 256), dtype=np.uint8)
    zones[128:] = 2
    colours = {0: (0, 0, 0, 0), 1: (200, 30, 30, 255), 2: (30, 200, 30, 255)}
    heatmaps = root / "analysis-heatmaps" / "synthetic-1"
    _write_cog(heatmaps / "change_ndvi.tif", change, nodata=float("nan"))
    _write_cog(heatmaps / "management_zones.tif", zones, nodata=0, colormap=colours)
    (root / "reports" / "synthetic-1").mkdir(parents=True)
    (root / "reports" / "synthetic-1" / "summary.json").write_text(json.dumps({"indices": {}}))

    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32633", always_xy=True)
    lon, lat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True).transform(
        500_064.0, 5_299_936.0)
    z = 19
    x, y = tile_of(lon, lat, z)
    expected_change = colour_table("RdBu")[design_index(0.25, CHANGE_SCALE)]
    tiles = {layer: _png(c.get(f"/tiles/synthetic-1/{layer}/{z}/{x}/{y}.png", headers=AUTH))
             for layer in ("change_ndvi", "management_zones")}
    seen = {"west": 0, "east": 0, 1: 0, 2: 0}
    for py in range(4, 256, 12):
        for px in range(4, 256, 12):
            e, n = to_utm.transform(*tile_pixel_lonlat(z, x, y, px + 0.5, py + 0.5))
            col, row = (e - 500_000.0) / 0.5, (5_300_000.0 - n) / 0.5
            inside = 2 < col < 254 and 2 < row < 254
            if not inside or abs(col - 128) < 2 or abs(row - 128) < 2:
                continue  # near an edge, resampling may blend
            if col < 128:
                assert (tiles["change_ndvi"][py, px] == expected_change).all()
                seen["west"] += 1
            else:
                assert tiles["change_ndvi"][py, px, 3] == 0
                seen["east"] += 1
            cls = 1 if row < 128 else 2
            assert tuple(tiles["management_zones"][py, px]) == colours[cls]
            seen[cls] += 1
    assert min(seen.values()) > 3, seen
    data = c.get("/map/synthetic-1/data.json", headers=AUTH).json()
    assert [l["name"] for l in data["layers"]] == ["change_ndvi", "management_zones"]
    assert data["layers"][0]["scale"] == {"ramp": "RdBu", "vmin": -0.5, "vmax": 0.5}


# Every fixed scale a tile can use, by a layer drawn on it: each built-in index, thermal, change.
SCALED_LAYERS = {**{name: (f"{name}.tif", index.scale) for name, index in INDICES.items()},
                 "thermal": ("thermal_c.tif", THERMAL_SCALE),
                 "change_ndvi": ("change_ndvi.tif", CHANGE_SCALE)}
BLOCK = 6  # pixels of 0.5 m per value: a tile pixel at a block's centre samples that value only


def _tile_pixel(lon: float, lat: float, z: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The XYZ tile (x, y) holding (lon, lat) at zoom z and the pixel (px, py) in it."""
    n = 256 << z
    fx = (lon + 180.0) / 360.0 * n
    fy = (1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n
    return (int(fx) // 256, int(fy) // 256), (int(fx) % 256, int(fy) % 256)


def test_api__tiles_and_legends_are_the_design_formula_at_every_palette_boundary(empty):
    """For every scale: a COG of blocks of vmin + k (vmax - vmin) / 255, k = 0..255 (and NaN, ±inf);
    the tile pixel at each block's centre has the table colour of the §3.1 index of that value,
    computed here, and each legend stop of /map/…/data.json too."""
    c, _, root = empty
    batch = "palette-stops-1"
    heatmaps = root / "analysis-heatmaps" / batch
    (root / "reports" / batch).mkdir(parents=True)
    (root / "reports" / batch / "summary.json").write_text(json.dumps({"indices": {}}))
    to_lonlat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    z = 18
    for layer, (name, scale) in SCALED_LAYERS.items():
        stops = [scale.vmin + k * (scale.vmax - scale.vmin) / 255 for k in range(256)]
        values = np.array(stops + [np.nan, np.inf, -np.inf] + [0.0] * 13, np.float32)
        blocks = values.reshape(17, 16)
        _write_cog(heatmaps / name, np.kron(blocks, np.ones((BLOCK, BLOCK), np.float32)),
                   nodata=float("nan"))
        table = colour_table(scale.ramp)
        tiles: dict[tuple[int, int], np.ndarray] = {}
        wrong = []
        for (row, col), value in np.ndenumerate(blocks):
            east = 500_000.0 + (col + 0.5) * BLOCK * 0.5
            north = 5_300_000.0 - (row + 0.5) * BLOCK * 0.5
            (x, y), (px, py) = _tile_pixel(*to_lonlat.transform(east, north), z)
            if (x, y) not in tiles:
                tiles[(x, y)] = _png(c.get(f"/tiles/{batch}/{layer}/{z}/{x}/{y}.png",
                                           headers=AUTH))
            want = table[design_index(float(value), scale)]
            if not (tiles[(x, y)][py, px] == want).all():
                wrong.append((float(value), tuple(tiles[(x, y)][py, px]), tuple(want)))
        assert not wrong, (layer, wrong)
    data = c.get(f"/map/{batch}/data.json", headers=AUTH).json()
    assert {layer["name"] for layer in data["layers"]} == set(SCALED_LAYERS)
    for layer in data["layers"]:
        scale = SCALED_LAYERS[layer["name"]][1]
        table = colour_table(scale.ramp)
        assert layer["scale"] == scale.as_dict()
        for stop in layer["legend"]:
            rgb = table[design_index(stop["value"], scale), :3]
            assert stop["color"] == "#%02x%02x%02x" % tuple(int(c) for c in rgb), (layer, stop)


def _failed_run(instance, batch_id: str, message: str, tags: dict[str, str]) -> None:
    """A run of batch_id (partition tag) whose one step failed with `message`."""
    import dagster as dg

    @dg.op
    def step():
        raise dg.Failure(description=message)

    @dg.job
    def failing():
        step()

    result = failing.execute_in_process(instance=instance, raise_on_error=False,
                                        tags={"dagster/partition": batch_id, **tags})
    assert not result.success


def test_api__refused_comes_from_the_run_tag_not_from_the_failure_text(tmp_path):
    """A failure that merely says "refused: " (a connection refused) is `failed`; a run tagged
    `imagery/refused` (assets/failures.py) is `refused`, with its reason."""
    import dagster as dg

    from pipeline.jobs import REFUSED_TAG

    store = LocalObjectStore(root=tmp_path / "data")
    for bucket in ("imagery-uploads", "analysis-heatmaps", "reports"):
        store.ensure_bucket(bucket)
    for batch in ("flaky-1", "bad-1"):
        store.put_bytes("imagery-uploads", f"{batch}/manifest.json", b"{}")
    with dg.DagsterInstance.ephemeral() as instance:
        _failed_run(instance, "flaky-1", "object store: Connection refused: 127.0.0.1:9000", {})
        _failed_run(instance, "bad-1", "Batch 'bad-1' refused: ortho.tif has no CRS",
                    {REFUSED_TAG: "true"})
        with TestClient(make_app(store, instance=instance)) as c:
            flaky = c.get("/imagery/flaky-1", headers=AUTH).json()
            bad = c.get("/imagery/bad-1", headers=AUTH).json()
    assert flaky["state"] == "failed" and "Connection refused" in flaky["reason"]
    assert bad["state"] == "refused" and bad["reason"] == "ortho.tif has no CRS"


def test_api__signed_store_urls_are_not_written_to_the_access_log(tmp_path):
    """A real uvicorn with its access log: /store/ lines keep the path, not the signature (a
    bearer capability while it lasts); other routes' query strings are logged as they are."""
    import logging
    import threading
    import time
    import urllib.request

    import uvicorn

    from tests.servers import free_port

    store = LocalObjectStore(root=tmp_path / "data")
    for bucket in ("imagery-uploads", "analysis-heatmaps", "reports"):
        store.ensure_bucket(bucket)
    store.put_bytes("reports", "b-1/report.pdf", b"%PDF-")
    signed = store.signed_path("GET", "reports", "b-1/report.pdf", expires_s=60)
    signature = signed.split("signature=")[1]
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(make_app(store), host="127.0.0.1", port=port,
                                           log_level="info", access_log=True))
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    access = logging.getLogger("uvicorn.access")
    access.addHandler(handler)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/{signed}") as response:
            assert response.read() == b"%PDF-"
        with urllib.request.urlopen(f"{base}/healthz?probe=1") as response:
            assert response.status == 200
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        access.removeHandler(handler)
    store_lines = [line for line in lines if "/store/reports/b-1/report.pdf" in line]
    assert len(store_lines) == 1 and " 200" in store_lines[0], lines
    assert not any(signature in line or "expires=" in line for line in lines), lines
    assert any("/healthz?probe=1" in line for line in lines), lines
