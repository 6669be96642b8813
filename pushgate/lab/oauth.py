"""Google's OAuth 2.0 token endpoint, JWT-bearer grant (docs/providers.md#fcm).

Checks the service-account assertion the way oauth2.googleapis.com does, so a sender that
signs with the wrong key, audience or lifetime fails here exactly as it would in production,
with Google's error bodies.
"""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import parse_qs

import jwt
from litestar import Request, Response, post
from litestar.handlers import HTTPRouteHandler

from pushgate.lab.responses import json_response
from pushgate.lab.state import LabState

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ACCEPTED_SCOPES = (
    "https://www.googleapis.com/auth/firebase.messaging",
    "https://www.googleapis.com/auth/cloud-platform",
)
TOKEN_LIFETIME = 3599
MAX_ASSERTION_LIFETIME = 3600
CLOCK_SKEW = 60

_SHORT_LIVED = (
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
    "Check your iat and exp values in the JWT claim."
)


class OAuthError(Exception):
    """An OAuth error answer: Google uses 400, except 401 for an unknown client."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


def verify_assertion(lab: LabState, assertion: str, now: float | None = None) -> dict[str, Any]:
    """Validate a service-account assertion and return its claims, or raise OAuthError."""
    now = time.time() if now is None else now
    account = lab.credentials.service_account
    try:
        header = jwt.get_unverified_header(assertion)
        claims = jwt.decode(
            assertion,
            lab.credentials.fcm_public_key,
            algorithms=["RS256"],
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False, "verify_aud": False},
        )
    except jwt.InvalidSignatureError as exc:
        raise OAuthError("invalid_grant", "Invalid JWT Signature.") from exc
    except jwt.InvalidAlgorithmError as exc:
        raise OAuthError("invalid_grant", "Invalid JWT Signature.") from exc
    except jwt.PyJWTError as exc:
        raise OAuthError("invalid_grant", "Invalid JWT: malformed assertion.") from exc
    if claims.get("iss") != account["client_email"]:
        raise OAuthError("invalid_client", "The OAuth client was not found.", status=401)
    if header.get("kid") != account["private_key_id"]:
        raise OAuthError("invalid_grant", "Invalid JWT Signature.")
    if claims.get("aud") != account["token_uri"]:
        raise OAuthError(
            "invalid_grant",
            f"Invalid JWT: Failed audience check. The right audience is {account['token_uri']}",
        )
    scopes = str(claims.get("scope", "")).split()
    if not any(scope in ACCEPTED_SCOPES for scope in scopes):
        raise OAuthError("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, int | float) or not isinstance(exp, int | float) or isinstance(iat, bool):
        raise OAuthError("invalid_grant", _SHORT_LIVED)
    if exp - iat > MAX_ASSERTION_LIFETIME or exp <= iat or exp < now or iat > now + CLOCK_SKEW:
        raise OAuthError("invalid_grant", _SHORT_LIVED)
    return claims


def oauth_handlers(lab: LabState) -> list[HTTPRouteHandler]:
    """Route handlers bound to this lab's state."""

    @post("/token")
    async def token(request: Request) -> Response[bytes]:
        """Exchange an assertion for a `ya29.lab-…` access token the send endpoint will accept."""
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        grant_type = form.get("grant_type", [""])[0]
        assertion = form.get("assertion", [""])[0]
        try:
            if grant_type != GRANT_TYPE:
                raise OAuthError("unsupported_grant_type", f"Invalid grant_type: {grant_type}")
            if not assertion:
                raise OAuthError("invalid_request", "Missing required parameter: assertion")
            verify_assertion(lab, assertion)
        except OAuthError as err:
            return json_response({"error": err.error, "error_description": err.description}, err.status)
        access_token = f"ya29.lab-{secrets.token_urlsafe(32)}"
        lab.issue_token(access_token, TOKEN_LIFETIME)
        return json_response(
            {"access_token": access_token, "expires_in": TOKEN_LIFETIME, "token_type": "Bearer"}
        )

    return [token]
