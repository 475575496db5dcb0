"""A Re:amaze brand's settings (the ``[reamaze]`` table, or each ``[brands.NAME]``): which
brand, which login, and how to pace the connection."""

from __future__ import annotations

from pydantic import Field, HttpUrl

from connectors.settings import HttpSettings, Strict, api_base


class ReamazeConfig(Strict):
    brand: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="brand subdomain")
    login_email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    api_token_env: str = "REAMAZE_API_TOKEN"
    base_url: HttpUrl | None = None
    http: HttpSettings = HttpSettings(requests_per_minute=60)
    overlap_seconds: float = Field(120.0, ge=0)
    # A change-listing page one pair read serves the brand's other pairs for this long
    # (they poll within seconds of each other); 0: every pair reads its own.
    feed_share_seconds: float = Field(15.0, ge=0)

    def api_base(self) -> str:
        return api_base(self.base_url, f"https://{self.brand}.reamaze.io/api/v1")
