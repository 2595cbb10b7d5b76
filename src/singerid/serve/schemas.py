"""Typed request results of the REST API (they are also its OpenAPI schema at ``/docs``)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Problem(BaseModel):
    detail: str = Field(description="one line: what is wrong and how to fix it")


class Quality(BaseModel):
    bandwidth_hz: float
    clipped_fraction: float
    level_dbfs: float
    warnings: list[str]


class Window(BaseModel):
    start: float
    end: float
    embedding: list[float]


class Embedding(BaseModel):
    file: str
    dim: int
    seconds: float
    embedding: list[float] = Field(description="L2-normalised vector of the whole recording")
    quality: Quality
    windows: list[Window] | None = Field(None, description="per-window vectors, when asked for with windows=true")


class Verification(BaseModel):
    score: float = Field(description="cosine similarity of the two recordings' embeddings")
    same_singer: bool | None = Field(description="the decision; null when the model has no calibration and no threshold was given")
    threshold: float | None
    threshold_source: str = Field(description="'calibration' (for these two lengths), 'given' or 'none'")
    probability: float | None = Field(description="calibrated probability of the same singer")
    seconds: list[float]
    quality: list[Quality]
    files: list[str]


class Candidate(BaseModel):
    name: str
    score: float


class Identification(BaseModel):
    singer: str = Field(description="the accepted singer, or 'unknown' when the best one is below the threshold")
    threshold: float | None
    threshold_source: str
    matches: list[Candidate] = Field(description="enrolled singers, best first")
    seconds: float
    quality: Quality


class Neighbour(BaseModel):
    id: int | None
    name: str | None = Field(description="file name of the catalogued recording")
    singer: str | None
    score: float
    start: float | None
    end: float | None


class Neighbours(BaseModel):
    hits: list[Neighbour]
    seconds: float
    quality: Quality


class Enrolment(BaseModel):
    singer: str
    ids: list[int] = Field(description="catalogue ids of the recordings added")
    skipped: list[str] = Field(description="files already enrolled for this singer (same content)")
    recordings: int = Field(description="recordings of this singer in the catalogue now")


class Singer(BaseModel):
    name: str
    recordings: int
    seconds: float


class Singers(BaseModel):
    singers: list[Singer]


class Removal(BaseModel):
    singer: str
    removed: int


class MapPoint(BaseModel):
    id: int
    x: float
    y: float
    singer: str | None
    name: str
    audio: str | None = Field(description="URL that plays the recording, when its file is available")


class CatalogMap(BaseModel):
    method: str
    points: list[MapPoint]


class Health(BaseModel):
    status: str
    model: str
    dim: int
    calibrated: bool
    catalog: dict
    workers: int
    busy: int
    capacity: int
