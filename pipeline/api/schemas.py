"""The bodies of DESIGN.md §6 as pydantic models: they validate requests and document responses
in /openapi.json. The upload request reuses the manifest model of §2, so an API upload is
validated exactly like a manifest written to the store."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.core.manifest import MANIFEST_NAME, Manifest, safe_relative_path

UPLOAD_REQUEST_NAME = "_upload_request.json"  # kept under the batch prefix until /complete
MAX_FILE_BYTES = 100 * 1024**3  # 100 GiB: a declared size above this is a mistake


class ErrorOut(BaseModel):
    detail: str = Field(description="What was wrong, naming the field or object, and the fix.")


class Health(BaseModel):
    ok: bool


class DeclaredFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="Relative to the batch prefix, as in the manifest.")
    size: int = Field(ge=0, le=MAX_FILE_BYTES, description="Bytes the PUT will send.")

    _check_path = field_validator("path")(lambda cls, v: safe_relative_path(v))


class ImageryCreate(Manifest):
    """A manifest (DESIGN.md §2, `sha256` optional) plus the files the client will upload."""

    files: tuple[DeclaredFile, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _files_cover_manifest(self) -> ImageryCreate:
        names = [f.path for f in self.files]
        if len(set(names)) != len(names):
            raise ValueError("`files` lists a path twice")
        for reserved in (MANIFEST_NAME, UPLOAD_REQUEST_NAME):
            if reserved in names:
                raise ValueError(f"`files` must not hold {reserved}: the API writes it")
        declared = set(names)
        wanted = [i.path for i in self.images] + ([self.zones] if self.zones else [])
        missing = [p for p in wanted if p not in declared]
        if missing:
            raise ValueError(f"`files` does not declare {missing}, which the manifest names; "
                             "add each with its size")
        return self

    def manifest(self) -> dict[str, Any]:
        """The manifest.json content: every field but `files`, unset ones left out."""
        return self.model_dump(mode="json", exclude={"files"}, exclude_none=True)


class UploadUrl(BaseModel):
    path: str
    url: str
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str] = Field(description="Headers the PUT must send (possibly none).")
    expires_at: datetime


class ImageryCreated(BaseModel):
    batch_id: str
    uploads: list[UploadUrl]


class ImageryCompleted(BaseModel):
    batch_id: str
    manifest: str = Field(description="URI of the manifest.json written.")


class RunOut(BaseModel):
    run_id: str
    status: str = Field(description="The Dagster run status, e.g. QUEUED, STARTED, SUCCESS.")
    started_at: datetime | None = None
    ended_at: datetime | None = None
    failure: str | None = None


class BatchState(BaseModel):
    batch_id: str
    state: Literal["uploading", "queued", "running", "succeeded", "failed", "refused"]
    runs: list[RunOut]
    reason: str | None = None


class RunsOut(BaseModel):
    runs: list[RunOut]


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_id: str


class RunCreated(BaseModel):
    run_id: str


class ReportOut(BaseModel):
    summary: dict[str, Any]
    links: dict[str, str] = Field(description="Object name -> presigned GET URL (1 h).")
