"""Offline validation of STAC documents against the JSON schemas shipped in tests/stac_schemas/
(see its README.md for their origin): every `$ref` resolves from that folder, never the network."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

SCHEMAS = Path(__file__).parent / "stac_schemas"
STAC = "https://schemas.stacspec.org/v1.1.0/"
URLS = {
    "https://geojson.org/schema/Feature.json": "Feature.json",
    "https://geojson.org/schema/Geometry.json": "Geometry.json",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json": "projection-v2.0.0.json",
    **{
        STAC + str(p.relative_to(SCHEMAS)): str(p.relative_to(SCHEMAS))
        for p in SCHEMAS.glob("*-spec/json-schema/*.json")
    },
}


@lru_cache(maxsize=1)
def _registry() -> Registry:
    def missing(uri: str):
        raise LookupError(f"{uri} is not in tests/stac_schemas (offline validation)")

    resources = [
        (
            url,
            Resource.from_contents(
                json.loads((SCHEMAS / path).read_text()), default_specification=DRAFT7
            ),
        )
        for url, path in URLS.items()
    ]
    return Registry(retrieve=missing).with_resources(resources)


def _validate(doc: dict, schema_url: str) -> None:
    schema = json.loads((SCHEMAS / URLS[schema_url]).read_text())
    schema["$id"] = schema_url
    validator = jsonschema.Draft7Validator(
        schema, registry=_registry(), format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


def validate_item(item: dict) -> None:
    """Raise AssertionError unless `item` is a valid STAC 1.1.0 Item and valid against each
    extension schema it lists."""
    _validate(item, STAC + "item-spec/json-schema/item.json")
    for extension in item.get("stac_extensions", []):
        _validate(item, extension)


def validate_collection(collection: dict) -> None:
    _validate(collection, STAC + "collection-spec/json-schema/collection.json")
    for extension in collection.get("stac_extensions", []):
        _validate(collection, extension)
