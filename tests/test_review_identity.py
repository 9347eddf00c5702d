"""Behind Identity-Aware Proxy the reviewer is the user IAP's signed header names, and only a valid signature
for this desk's audience counts. The keys are served from 127.0.0.1 as IAP publishes them (PEM by key id)."""

from __future__ import annotations

import http.server
import json
import threading
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from google.auth import crypt, jwt

from review.app import create_app
from review.identity import IAP_HEADER
from tests.review_support import Clock, add_drafts, desk_on, review_message

AUDIENCE = "/projects/123456/global/backendServices/789"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem(key: ec.EllipticCurvePrivateKey, public: bool = False) -> str:
    if public:
        public_format = serialization.PublicFormat.SubjectPublicKeyInfo
        return key.public_key().public_bytes(serialization.Encoding.PEM, public_format).decode()
    private_format, unencrypted = serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, private_format, unencrypted).decode()


IAP_KEY, OTHER_KEY = _key(), _key()


@pytest.fixture(scope="module")
def certs_url():
    """IAP's public keys, served as https://www.gstatic.com/iap/verify/public_key serves them."""
    body = json.dumps({"iap-key-1": _pem(IAP_KEY, public=True)}).encode()

    class Keys(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Keys)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/public_key"
    server.shutdown()


def _token(key=IAP_KEY, audience=AUDIENCE, issuer="https://cloud.google.com/iap", email="ana@example.com",
           expires_in=600) -> str:
    now = int(time.time())
    signer = crypt.ES256Signer.from_string(_pem(key), key_id="iap-key-1")
    claims = {
        "iss": issuer, "aud": audience, "email": email, "sub": "accounts.google.com:1", "iat": now,
        "exp": now + expires_in,
    }
    return jwt.encode(signer, claims).decode()


@pytest.fixture
def client(tmp_path, certs_url):
    desk = desk_on(
        f"sqlite:///{tmp_path / 'desk.sqlite3'}", Clock(), auth="iap", iap_audience=AUDIENCE, iap_certs_url=certs_url
    )
    add_drafts(desk, review_message("1"))
    with TestClient(create_app(desk)) as client:
        yield client


def test_the_signed_in_user_decides_and_is_recorded(client):
    headers = {IAP_HEADER: _token()}
    page = client.get("/", headers=headers)
    assert page.status_code == 200 and "ana@example.com" in page.text
    decision = client.post("/api/drafts/1/decision", json={"decision": "approve"}, headers=headers)
    assert decision.status_code == 200 and decision.json()["reviewer"] == "ana@example.com"


@pytest.mark.parametrize(
    "token",
    [
        None,
        "not a jwt",
        pytest.param(lambda: _token(key=OTHER_KEY), id="signed-by-another-key"),
        pytest.param(lambda: _token(audience="/projects/1/global/backendServices/2"), id="another-audience"),
        pytest.param(lambda: _token(issuer="https://accounts.google.com"), id="another-issuer"),
        pytest.param(lambda: _token(expires_in=-3600), id="expired"),
        pytest.param(lambda: _token()[:-4] + "AAAA", id="tampered"),
    ],
)
def test_a_header_that_iap_did_not_sign_for_this_desk_proves_nothing(client, token):
    token = token() if callable(token) else token
    headers = {IAP_HEADER: token} if token else {}
    assert client.get("/", headers=headers).status_code == 401
    body = {"decision": "approve", "reviewer": "ana"}
    assert client.post("/api/drafts/1/decision", json=body, headers=headers).status_code == 401
    assert client.get("/api/queue", headers=headers).status_code == 401
    assert client.get("/api/drafts/1", headers={IAP_HEADER: _token()}).json()["decision"] is None


def test_behind_iap_nobody_decides_in_another_agents_name(client):
    response = client.post(
        "/api/drafts/1/decision", json={"decision": "approve", "reviewer": "ben@example.com"},
        headers={IAP_HEADER: _token()},
    )
    assert response.status_code == 422
