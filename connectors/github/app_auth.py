"""Authenticating as a GitHub App installation (trackers.md §1.1).

The app signs a short JWT with its private key (RS256, ``iss`` = the app's id, at most ten
minutes long, ``iat`` a minute in the past for clock drift) and trades it at
``POST /app/installations/{id}/access_tokens`` for an installation token that lasts an
hour. Requests then carry that token; it is renewed five minutes before it expires, and
once more when GitHub answers 401 (revoked, or our clock is off). App endpoints
(``/app…``) are answered for the app itself, so they get the JWT.

Each installation token is registered with the secret scrubber the moment it arrives: it
is as good as the key while it lives. A failed exchange means the request itself was never
sent: a refusal (wrong key or app id, an installation that is gone) is an ``AuthError``
naming the app, anything else a rate limit or a transient error that may be retried at
once, write or not.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from datetime import UTC, datetime, timedelta

import httpx
import jwt

from connectors.github.wire import API_VERSION, CONNECTOR
from connectors.http import parse_retry_after
from syncer.errors import AuthError, RateLimitedError, TransientError, trim
from syncer.secrets import register_secret

JWT_LIFETIME = timedelta(minutes=9)  # GitHub refuses more than ten
JWT_BACKDATE = timedelta(seconds=60)
RENEW_BEFORE = timedelta(minutes=5)


def app_jwt(app_id: int, private_key: str, now: datetime) -> str:
    issued = now - JWT_BACKDATE
    return jwt.encode({"iat": int(issued.timestamp()), "exp": int((now + JWT_LIFETIME).timestamp()),
                       "iss": str(app_id)}, private_key, algorithm="RS256")


class InstallationAuth(httpx.Auth):
    requires_response_body = True

    def __init__(self, *, base_url: str, app_id: int, installation_id: int, private_key: str,
                 now: Callable[[], datetime] | None = None) -> None:
        self.base = httpx.URL(base_url.rstrip("/") + "/")
        self.app_id = app_id
        self.installation_id = installation_id
        self.private_key = private_key
        self.now = now or (lambda: datetime.now(UTC))
        self.token: str | None = None
        self.expires: datetime | None = None
        self.exchanges = 0
        # What the installation may do, from the last exchange ({"issues": "write", ...}).
        self.permissions: dict[str, str] = {}

    def _is_app_endpoint(self, request: httpx.Request) -> bool:
        prefix = self.base.raw_path.decode().rstrip("/")
        path = request.url.raw_path.decode().split("?", 1)[0]
        return path == prefix + "/app" or path.startswith(prefix + "/app/")

    def _exchange(self) -> httpx.Request:
        return httpx.Request(
            "POST", self.base.join(f"app/installations/{self.installation_id}/access_tokens"),
            headers={"Authorization": f"Bearer {self.jwt()}",
                     "Accept": "application/vnd.github+json",
                     "X-GitHub-Api-Version": API_VERSION})

    def jwt(self) -> str:
        return app_jwt(self.app_id, self.private_key, self.now())

    def _take(self, response: httpx.Response) -> None:
        """Keep the token of a successful exchange, or raise why there is none."""
        if response.status_code != 201:
            raise self._refusal(response)
        try:
            data = response.json()
            token, expires = str(data["token"]), str(data["expires_at"])
            expires_at = datetime.fromisoformat(expires.replace("Z", "+00:00"))
            granted = data.get("permissions") or {}
            permissions = {str(k): str(v) for k, v in granted.items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise TransientError("GitHub answered the installation token exchange without a "
                                 "token", connector=CONNECTOR, status=201, maybe_sent=False,
                                 body=trim(response.content)) from None
        register_secret(token)
        self.token, self.expires, self.permissions = token, expires_at, permissions
        self.exchanges += 1

    def _refusal(self, response: httpx.Response) -> Exception:
        status = response.status_code
        what = (f"the installation token exchange of GitHub App {self.app_id} "
                f"(installation {self.installation_id})")
        body = trim(response.content)
        if status == 429 or response.headers.get("retry-after"):
            return RateLimitedError(f"{what} was rate limited", connector=CONNECTOR,
                                    status=status, retry_after=parse_retry_after(
                                        response.headers.get("retry-after"), maximum=3600))
        if status in (401, 403, 404, 422):
            why = {401: "the app id or the private key is wrong",
                   404: "the installation does not exist (uninstalled, or another app's)"}
            return AuthError(f"GitHub refused {what}: {why.get(status, 'not allowed')}",
                             connector=CONNECTOR, status=status, body=body)
        return TransientError(f"{what} failed", connector=CONNECTOR, status=status,
                              maybe_sent=False, body=body)

    def _fresh(self) -> bool:
        return (self.token is not None and self.expires is not None
                and self.expires - self.now() > RENEW_BEFORE)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._is_app_endpoint(request):
            request.headers["Authorization"] = f"Bearer {self.jwt()}"
            yield request
            return
        renewed = False
        if not self._fresh():
            self._take((yield self._exchange()))
            renewed = True
        request.headers["Authorization"] = f"Bearer {self.token}"
        response = yield request
        if response.status_code == 401 and not renewed:
            # Revoked, or expired earlier than our clock says: one new token, one retry.
            self.token = None
            self._take((yield self._exchange()))
            request.headers["Authorization"] = f"Bearer {self.token}"
            yield request
