"""Finding finished batches in the uploads bucket, O(new prefixes) per scan.

S3 lists keys in key order only, so a "newest first" cursor cannot exist and a key cursor misses
batch ids that sort before it (dagster-io/dagster#22892). Instead a scan:

1. lists the batch prefixes with a delimiter (one request per 1,000 batches, however many images
   each holds);
2. HEADs `<prefix>/manifest.json` only for prefixes not yet known (new or still uploading);
3. re-HEADs a bounded, rotating slice of known batches to notice re-uploaded manifests (a new
   ETag), so every known batch is rechecked once per ceil(known / recheck_budget) scans.

The state is a small JSON document (the sensor cursor): known batch ids with their manifest ETag,
refused prefixes (so each refusal is logged once), and the rotation offset. Dagster-free.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from pipeline.core.manifest import MANIFEST_NAME, batch_id_problem

MAX_REFUSED_REMEMBERED = 10_000


@dataclass
class ScanState:
    known: dict[str, str] = field(default_factory=dict)  # batch id -> manifest ETag
    refused: list[str] = field(default_factory=list)  # prefixes refused (logged once)
    offset: int = 0  # rotation offset of the re-upload check

    @classmethod
    def from_cursor(cls, cursor: str | None) -> ScanState:
        if not cursor:
            return cls()
        data = json.loads(cursor)
        return cls(known=dict(data.get("known", {})), refused=list(data.get("refused", [])),
                   offset=int(data.get("offset", 0)))

    def to_cursor(self) -> str:
        return json.dumps({"v": 1, "known": self.known, "refused": self.refused[-MAX_REFUSED_REMEMBERED:],
                           "offset": self.offset}, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class FoundBatch:
    batch_id: str
    etag: str
    reupload: bool


@dataclass(frozen=True)
class Refusal:
    prefix: str
    reason: str


@dataclass(frozen=True)
class ScanResult:
    found: list[FoundBatch]
    refused: list[Refusal]
    pending: list[str]  # prefixes with objects but no manifest yet (uploads in progress)
    state: ScanState


def scan_uploads(store, bucket: str, state: ScanState, *, recheck_budget: int = 200) -> ScanResult:
    """One scan of `bucket`; `store` is an ObjectStore. Returns what is new and the next state."""
    known = dict(state.known)
    refused_before = set(state.refused)
    found: list[FoundBatch] = []
    refused: list[Refusal] = []
    pending: list[str] = []
    for prefix in store.list_prefixes(bucket, delimiter="/"):
        batch_id = prefix[:-1] if prefix.endswith("/") else prefix
        if batch_id in known or prefix in refused_before:
            continue
        problem = batch_id_problem(batch_id)
        if problem:
            refused.append(Refusal(prefix=prefix, reason=problem))
            continue
        info = store.head(bucket, f"{batch_id}/{MANIFEST_NAME}")
        if info is None:
            pending.append(batch_id)
            continue
        found.append(FoundBatch(batch_id=batch_id, etag=info.etag, reupload=False))
        known[batch_id] = info.etag

    # Re-upload check over a rotating slice of the batches known before this scan.
    previously_known = sorted(state.known)
    offset = state.offset
    if previously_known and recheck_budget > 0:
        count = min(recheck_budget, len(previously_known))
        start = offset % len(previously_known)
        for i in range(count):
            batch_id = previously_known[(start + i) % len(previously_known)]
            info = store.head(bucket, f"{batch_id}/{MANIFEST_NAME}")
            if info is not None and info.etag != known[batch_id]:
                found.append(FoundBatch(batch_id=batch_id, etag=info.etag, reupload=True))
                known[batch_id] = info.etag
        offset = (start + count) % len(previously_known)
    next_state = ScanState(known=known, refused=state.refused + [r.prefix for r in refused],
                           offset=offset)
    return ScanResult(found=found, refused=refused, pending=pending, state=next_state)
