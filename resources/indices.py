"""The deployment's index registry as a resource: the built-ins plus IMAGERY_INDICES_FILE.

The code location builds the registry once when it loads (`pipeline.definitions`): a bad indices
file keeps it from loading, and the index assets' code versions are derived from it. Each step
that computes, checks or reports indices reads the same file again through this resource, in its
own process (a run worker loads the code location anyway), never from module state.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from pipeline.core.registry import Registry, build_registry


class IndexRegistryResource(dg.ConfigurableResource):
    """`indices_file`: the custom index definitions (Settings.indices_file), or None."""

    indices_file: str | None = None

    @classmethod
    def for_registry(cls, registry: Registry) -> IndexRegistryResource:
        return cls(indices_file=registry.source)

    def registry(self) -> Registry:
        return build_registry(indices_file=Path(self.indices_file) if self.indices_file else None)
