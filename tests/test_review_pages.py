"""The review desk's pages through TestClient: sign-in, the queue, deciding with a form, CSRF, escaping."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from review.app import create_app
from tests.review_support import Clock, add_drafts, desk_on, review_message, sign_in

SCRIPT = '<script>document.title="owned"</script><img src=x onerror=alert(1)>'


@pytest.fixture
def desk(tmp_path):
    desk = desk_on(f"sqlite:///{tmp_path / 'desk.sqlite3'}", Clock())
    add_drafts(desk, review_message("1", chat=f"My pizza was cold {SCRIPT}"), review_message("2", minutes_after=5))
    return desk


@pytest.fixture
def client(desk):
    with TestClient(create_app(desk)) as client:
        yield client


def test_a_newcomer_is_asked_for_a_name_first(client):
    response = client.get("/stats", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/sign-in?next=/stats")
    sign_in(client, "Ana")
    assert "Signed in as <strong>Ana</strong>" in client.get("/stats").text


def test_sign_in_sends_only_to_the_desks_own_pages(client):
    client.get("/sign-in")
    response = client.post(
        "/sign-in", data={"name": "Ana", "next": "//evil.example/", "csrftoken": client.cookies["csrftoken"]},
        follow_redirects=False,
    )
    assert response.headers["location"] == "/"


def test_the_queue_shows_markup_in_a_chat_as_text(client):
    sign_in(client, "Ana")
    page = client.get("/").text
    assert "<script>document.title" not in page and "<img src=x" not in page
    assert "&lt;script&gt;document.title=&#34;owned&#34;&lt;/script&gt;" in page
    assert page.index('id="chat-1"') < page.index('id="chat-2"'), "oldest first"


def test_deciding_with_the_form_approves_or_records_an_edit(client):
    sign_in(client, "Ana")
    token = client.cookies["csrftoken"]
    assert client.post("/drafts/1/open", data={"csrftoken": token}, follow_redirects=False).status_code == 303
    draft = client.get("/api/drafts/1").json()
    assert draft["claimed_by"] == "Ana"
    response = client.post(
        "/drafts/1/decision", data={"csrftoken": token, "action": "approve", "text": draft["draft_reply"]},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert "Chat 1: approved as drafted. Thank you, Ana." in client.get("/").text
    client.post("/drafts/2/decision", data={"csrftoken": token, "action": "approve", "text": "Sorry! Refund sent."})
    assert client.get("/api/drafts/2").json()["decision"]["decision"] == "edit"


def test_a_rejection_without_its_reason_is_shown_again_with_the_error(client):
    sign_in(client, "Ana")
    response = client.post("/drafts/1/decision", data={"csrftoken": client.cookies["csrftoken"], "action": "reject"})
    assert response.status_code == 422 and "a rejection needs a reason" in response.text
    assert client.get("/api/drafts/1").json()["decision"] is None


def test_a_tampered_form_is_422(client):
    sign_in(client, "Ana")
    token = client.cookies["csrftoken"]
    for fields in ({"action": "approve", "sentiment": "very"}, {"action": "delete"}):
        form = {"csrftoken": token, "text": "Sorry", **fields}
        assert client.post("/drafts/1/decision", data=form).status_code == 422
    assert client.get("/api/drafts/1").json()["decision"] is None


def test_a_form_without_its_csrf_token_is_refused(client):
    sign_in(client, "Ana")
    response = client.post("/drafts/1/decision", data={"action": "approve", "text": "Sorry"})
    assert response.status_code == 403
    forged = client.post("/drafts/1/decision", data={"action": "approve", "text": "Sorry", "csrftoken": "forged"})
    assert forged.status_code == 403
    assert client.get("/api/drafts/1").json()["decision"] is None


def test_the_api_takes_no_cross_site_form_posts(client):
    """The API skips the form token, so it must refuse what a cross-site form can send: anything but JSON."""
    sign_in(client, "Ana")
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        response = client.post(
            "/api/drafts/1/decision", content=b'{"decision": "approve"}', headers={"content-type": content_type}
        )
        assert response.status_code == 422, content_type
    assert client.get("/api/drafts/1").json()["decision"] is None


def test_the_stats_page_shows_rates_with_intervals(client):
    sign_in(client, "Ana")
    client.post("/api/drafts/1/decision", json={"decision": "approve"})
    page = client.get("/stats").text
    assert "100%" in page and "21\N{EN DASH}100%" in page, "1 of 1 accepted: Wilson's 95% interval is 20.7% to 100%"
