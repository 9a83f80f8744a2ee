"""Which batches the `reprocess_stale_batches` schedule re-runs, and in what order. Dagster-free.

A batch (a partition of `imagery_batches`) is reprocessed when, and only when, its latest run is
not queued or running and:

1. **failed**: its latest run failed for a reason other than bad input (a crashed worker, an
   object store that stayed unavailable through the step retries, a bug since fixed);
2. **missing**: an asset the job always produces has never been materialized for it (a run that
   was cancelled, or a partition added while the daemon was down);
3. **stale**: an asset's current `code_version` differs from the code version recorded on the
   partition's latest materialization of it (e.g. an index formula changed), or the batch's
   change compares with the wrong flight of its site (a late older batch arrived, or its previous
   batch was processed again with different results; `pipeline.core.sites.stale_records`).

A batch whose latest run failed for good (input refused with a deliberate `dg.Failure`, or outputs
failing a blocking check, such as temperatures from a wrong `thermal_unit`) is not retried: the
same upload would fail the same way every night. It is
processed again when its manifest is re-uploaded (a new ETag), which is the upload sensor's job.

Failed and missing batches come first (they have no current outputs at all), then stale ones;
within each group the oldest batch (registered first) comes first, and at most `max_runs` are
selected, so a formula change over thousands of batches drains at a steady rate per tick.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

FAILED, MISSING, STALE = "failed", "missing", "stale"
_PRIORITY = {FAILED: 0, MISSING: 1, STALE: 2}


@dataclass(frozen=True)
class BatchFacts:
    """What the instance knows about one batch."""

    batch_id: str
    order: int  # registration order of the partition (0 = oldest)
    materialized: Mapping[str, str | None] = field(default_factory=dict)  # asset -> code version
    latest_run_id: str | None = None
    in_progress: bool = False  # latest run queued, starting, running or cancelling
    failed: bool = False  # latest run failed
    bad_input: bool = False  # ... and it failed because the input was refused
    site_stale: str | None = None  # why its change compares with the wrong flight, if it does


@dataclass(frozen=True)
class ReprocessRequest:
    batch_id: str
    reason: str  # FAILED | MISSING | STALE
    detail: str  # human-readable: which assets, which run
    run_key: str


@dataclass(frozen=True)
class Selection:
    requests: list[ReprocessRequest]
    due: int  # batches that qualified, before the bound
    in_progress: int  # batches skipped because a run is queued or running
    refused: int  # batches skipped because their latest run refused bad input


def code_fingerprint(code_versions: Mapping[str, str]) -> str:
    """A short stable digest of the current code versions (part of a stale request's run key)."""
    text = ",".join(f"{k}={v}" for k, v in sorted(code_versions.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _why(facts: BatchFacts, *, code_versions: Mapping[str, str],
         expected: frozenset[str]) -> tuple[str, str] | None:
    if facts.failed:
        return FAILED, f"latest run {facts.latest_run_id} failed"
    never = sorted(a for a in expected if a not in facts.materialized)
    if never:
        return MISSING, f"never materialized: {', '.join(never)}"
    changed = sorted(
        f"{asset} {facts.materialized[asset]} -> {version}"
        for asset, version in code_versions.items()
        if asset in facts.materialized and facts.materialized[asset] != version)
    if changed:
        return STALE, f"code version changed: {'; '.join(changed)}"
    if facts.site_stale:
        return STALE, f"site series changed: {facts.site_stale}"
    return None


def select_reprocessing(*, batches: Sequence[BatchFacts], code_versions: Mapping[str, str],
                        expected: frozenset[str] | set[str], max_runs: int) -> Selection:
    """The batches to re-run this tick: failed, then missing, then stale; oldest first; bounded.

    `code_versions` maps each versioned asset to its current code version; `expected` names the
    assets every successful run materializes (optional outputs such as the report are left out).
    """
    if max_runs < 0:
        raise ValueError(f"max_runs must be >= 0, got {max_runs}")
    expected = frozenset(expected)
    fingerprint = code_fingerprint(code_versions)
    due: list[tuple[int, int, ReprocessRequest]] = []
    busy = refused = 0
    for facts in batches:
        if facts.in_progress:
            busy += 1
            continue
        if facts.failed and facts.bad_input:
            refused += 1
            continue
        why = _why(facts, code_versions=code_versions, expected=expected)
        if why is None:
            continue
        reason, detail = why
        token = fingerprint if reason == STALE else (facts.latest_run_id or "never-run")
        if reason == STALE and facts.site_stale:
            token = f"{fingerprint}-{code_fingerprint({'site': facts.site_stale})}"
        request = ReprocessRequest(batch_id=facts.batch_id, reason=reason, detail=detail,
                                   run_key=f"reprocess:{facts.batch_id}:{reason}:{token}")
        due.append((_PRIORITY[reason], facts.order, request))
    due.sort(key=lambda item: (item[0], item[1]))
    return Selection(requests=[r for _, _, r in due[:max_runs]], due=len(due), in_progress=busy,
                     refused=refused)
