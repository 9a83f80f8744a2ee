"""Shared set-up of the HTTP API tests: a processed demo batch and a refused one (the embedded
default: local store, SQLite instance), built once per session, and helpers."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from pipeline.api import ApiConfig, create_app
from pipeline.storage import LocalObjectStore
from tests.test_browser import DEMO_BATCH, REFUSED_BATCH, process_batches

TOKEN = "test-token-" + "x" * 20
DIGEST = hashlib.sha256(TOKEN.encode()).hexdigest()
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass(frozen=True)
class World:
    root: Path
    data_dir: Path
    dagster_home: Path
    demo: str = DEMO_BATCH
    refused: str = REFUSED_BATCH


def process_world(tmp_path_factory) -> World:
    """The `processed` fixture of conftest.py: one per session, shared by the API test modules."""
    root = tmp_path_factory.mktemp("api_world")
    out = process_batches(root)
    assert out["demo"]["success"], out
    assert out["refused"]["success"] is False, out
    return World(root=root, data_dir=root / "data", dagster_home=root / "dagster_home")


def make_app(store, *, instance=None, **config):
    return create_app(config=ApiConfig(token_digests=(DIGEST,), **config), store=store,
                      instance=instance)


def local_store(world: World) -> LocalObjectStore:
    return LocalObjectStore(root=world.data_dir)


def open_instance(world: World) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(world.dagster_home))


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The XYZ tile holding (lon, lat) at zoom z."""
    n = 1 << z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return x, y


def tile_pixel_lonlat(z: int, x: int, y: int, px: float, py: float) -> tuple[float, float]:
    """(lon, lat) of pixel (px, py) of a 256² tile."""
    n = 1 << z
    lon = (x + px / 256.0) / n * 360.0 - 180.0
    lat = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * (y + py / 256.0) / n))))
    return lon, lat
