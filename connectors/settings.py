"""What every connection's settings build on: strict frozen models and the HTTP budget
settings. Apart from ``syncer.config`` so each connector's own config model
(``connectors/<system>/config.py``) can import it while ``syncer.config`` composes them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpSettings(Strict):
    requests_per_minute: float = Field(60.0, gt=0)
    # For APIs that limit writes tighter than requests (GitHub: ~80 content-creating
    # requests a minute within 5,000 an hour): writes draw from this budget as well as
    # from requests_per_minute. None: requests_per_minute alone limits writes.
    writes_per_minute: float | None = Field(None, gt=0)
    # 1: evenly spaced requests. A larger burst can exceed a server's strict sliding window
    # (the benchmark provoked 429s with 5 at 80/min) for no gain in sustained throughput.
    burst: int = Field(1, ge=1)
    timeout_seconds: float = Field(20.0, gt=0, le=300)
    max_attempts: int = Field(8, ge=1, le=50)
    max_retry_after_seconds: float = Field(300.0, gt=0)

    @field_validator("writes_per_minute")
    @classmethod
    def _writes_within_requests(cls, v: float | None, info: ValidationInfo) -> float | None:
        overall = info.data.get("requests_per_minute")  # absent when it failed itself
        if v is not None and overall is not None and v > overall:
            # Accepting it would promise a write rate the overall budget never delivers.
            raise ValueError("must not exceed requests_per_minute: every write also draws "
                             "from that budget")
        return v


