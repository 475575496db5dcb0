"""GitHub Apps in the simulator: the app's JWT, installation tokens, and what each may do.

As GitHub documents it (docs.github.com "Authenticating as a GitHub App installation"):

* ``/app`` endpoints take only a JWT signed RS256 with the app's private key, ``iss`` the
  app's id, ``exp`` at most ten minutes after ``iat``, and not expired or issued in the
  future on GitHub's clock (60 s of drift allowed); anything else is 401.
* ``POST /app/installations/{id}/access_tokens`` answers 201 with ``token`` (``ghs_…``),
  ``expires_at`` an hour later, ``permissions`` and ``repository_selection``. Tokens stay
  valid until they expire, each one independently; after that they are 401 ``Bad
  credentials``.
* The installation acts as the user ``SLUG[bot]`` (type ``Bot``); it cannot read ``/user``
  (403 ``Resource not accessible by integration``).

The JWT and the token expiry are judged on ``wall`` (real time by default), not on the
simulator's data clock, since the connector signs with its own clock.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.github.sim.state import GhUser, GitHubError, GitHubState

TOKEN_LIFETIME = timedelta(hours=1)
DRIFT = 60
MAX_JWT_SECONDS = 600


@dataclass
class GhInstallation:
    id: int
    bot: GhUser
    permissions: dict[str, str]


@dataclass
class GhApp:
    id: int
    slug: str
    public_key: Any
    installations: dict[int, GhInstallation] = field(default_factory=dict)


def new_private_key() -> tuple[str, Any]:
    """A fresh RSA key as (PEM text of the private key, its public key)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return pem, key.public_key()


class AppRegistry:
    def __init__(self, state: GitHubState, wall: Callable[[], datetime] | None = None) -> None:
        self.state = state
        self.wall = wall or (lambda: datetime.now(UTC))
        self.apps: dict[int, GhApp] = {}
        # installation token -> (the installation, when it expires)
        self.tokens: dict[str, tuple[GhInstallation, datetime]] = {}

    def add(self, slug: str, permissions: dict[str, str]) -> tuple[GhApp, GhInstallation, str]:
        pem, public = new_private_key()
        app = GhApp(self.state.next_id(), slug, public)
        bot = self.state.add_user(f"{slug}[bot]", kind="Bot")
        bot.token = ""  # only installation tokens act as the bot
        installation = GhInstallation(self.state.next_id(), bot, dict(permissions))
        app.installations[installation.id] = installation
        self.apps[app.id] = app
        return app, installation, pem

    def app_for_jwt(self, authorization: str) -> GhApp:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise GitHubError(401, "A JSON web token could not be decoded")
        try:
            claims = jwt.decode(token.strip(), options={"verify_signature": False})
            app = self.apps.get(int(claims["iss"]))
        except (jwt.InvalidTokenError, KeyError, TypeError, ValueError):
            raise GitHubError(401, "A JSON web token could not be decoded") from None
        if app is None:
            raise GitHubError(401, "Integration not found")
        try:
            claims = jwt.decode(token.strip(), app.public_key, algorithms=["RS256"],
                                options={"verify_exp": False, "verify_iat": False})
        except jwt.InvalidTokenError:
            raise GitHubError(401, "A JSON web token could not be decoded") from None
        now = self.wall().timestamp()
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or iat > now + DRIFT:
            raise GitHubError(401, "'Issued at' claim ('iat') must be an Integer representing "
                                   "the time that the assertion was issued")
        if not isinstance(exp, int) or exp <= now - DRIFT or exp - iat > MAX_JWT_SECONDS:
            raise GitHubError(401, "'Expiration time' claim ('exp') must be a numeric value "
                                   "representing the future time at which the assertion "
                                   "expires")
        return app

    def issue_token(self, app: GhApp, installation_id: int) -> dict[str, Any]:
        installation = app.installations.get(installation_id)
        if installation is None:
            raise GitHubError(404, "Not Found")
        token = f"ghs_{secrets.token_hex(18)}"
        expires = (self.wall() + TOKEN_LIFETIME).replace(microsecond=0)
        self.tokens[token] = (installation, expires)
        return {"token": token, "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "permissions": dict(installation.permissions),
                "repository_selection": "selected"}

    def bot_for_token(self, token: str) -> GhUser | None:
        """The bot an installation token acts as; None for other tokens. Expired: 401."""
        found = next((v for t, v in self.tokens.items() if secrets.compare_digest(t, token)),
                     None)
        if found is None:
            return None
        installation, expires = found
        if self.wall() >= expires:
            raise GitHubError(401, "Bad credentials")
        return installation.bot

    def is_installation(self, user: GhUser) -> bool:
        return any(i.bot is user for app in self.apps.values()
                   for i in app.installations.values())

    def app_json(self, app: GhApp) -> dict[str, Any]:
        stamp = self.wall().strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"id": app.id, "slug": app.slug, "node_id": f"A_{app.id}",
                "client_id": f"Iv1.{app.id:016x}", "name": app.slug.replace("-", " ").title(),
                "description": "", "external_url": "https://example.com",
                "html_url": f"https://github.com/apps/{app.slug}", "created_at": stamp,
                "updated_at": stamp, "permissions": {"issues": "write", "metadata": "read"},
                "events": ["issues", "issue_comment"], "owner": None}
