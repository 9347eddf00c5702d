"""Who is deciding: behind Identity-Aware Proxy, the user its signed header names, once the signature checks out.

IAP signs `x-goog-iap-jwt-assertion` with ES256 keys it publishes; a header that is merely present proves
nothing (anything that reaches the container without IAP could set it), so the desk verifies the signature,
the audience (this application), the issuer and the expiry before it believes the email inside.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import google.auth.transport.requests
from google.auth import jwt

_LOGGER = logging.getLogger(__name__)
IAP_HEADER = "x-goog-iap-jwt-assertion"
IAP_ISSUER = "https://cloud.google.com/iap"
# IAP rotates its keys rarely and publishes new ones before it signs with them.
CERTS_TTL_SECS = 600.0


class NotAuthenticated(Exception):
    """The request carries no valid IAP header."""


class IapVerifier:
    """Checks IAP's header against the keys at `certs_url` (cached for CERTS_TTL_SECS) and the expected audience."""

    def __init__(self, audience: str, certs_url: str, request=None):
        self._audience = audience
        self._certs_url = certs_url
        self._request = request or google.auth.transport.requests.Request()
        self._certs: dict[str, str] = {}
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    def user(self, token: str | None) -> str:
        """The email of the user the token names; raises NotAuthenticated unless IAP signed it for this desk."""
        if not token:
            raise NotAuthenticated(f"no {IAP_HEADER} header: the desk is reached only through Identity-Aware Proxy")
        try:
            claims = jwt.decode(token, certs=self._keys(), audience=self._audience)
        except (ValueError, KeyError) as error:
            raise NotAuthenticated(f"IAP header rejected: {error}") from error
        if claims.get("iss") != IAP_ISSUER or not claims.get("email"):
            raise NotAuthenticated(f"IAP header rejected: issuer {claims.get('iss')!r}, email {claims.get('email')!r}")
        return claims["email"]

    def _keys(self) -> dict[str, str]:
        with self._lock:
            if time.monotonic() - self._fetched_at > CERTS_TTL_SECS:
                response = self._request(self._certs_url, method="GET")
                if response.status != 200:
                    raise ValueError(f"IAP keys unavailable from {self._certs_url}: HTTP {response.status}")
                self._certs, self._fetched_at = json.loads(response.data), time.monotonic()
                _LOGGER.info("fetched %d IAP keys from %s", len(self._certs), self._certs_url)
            return self._certs
