"""The review desk in a real browser: Debian's headless Chromium driven by Playwright (nothing downloaded), the
desk served by uvicorn on the local stack. Agents approve, edit, reject and correct a sentiment; the decisions
are read back from the BigQuery emulator and the replies topic. Agents confirm and correct sentiment checks; a chat
corrected to negative is read back from the chats topic. The test saves the screenshots in docs/img/."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
import uvicorn

from local.stack import LocalStack, free_port
from pipeline.contracts import CheckReason
from review.app import create_app
from tests.review_support import T0, RunningClock, check_message, desk_on, publish_reviews, review_message, wait_for

_LOGGER = logging.getLogger(__name__)
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "img"
TUNED, BASE = "gemma3-270m-sentiment-lora", "gemma3-270m"
SCRIPT_CHAT = 'Customer: <script>document.title="owned";window.owned=1</script> my pizza is cold <b>again</b>'
CHATS = {
    "88213": ("Customer: My order #88213 arrived 90 minutes late and the fries were cold. Second time this month.\n"
              "Agent: I'm very sorry about that. Let me check the order.\n"
              "Customer: I don't want excuses, I want a refund.",
              "Order #88213 arrived 90 minutes late with cold fries; the customer wants a refund.",
              "I'm sorry your order #88213 arrived 90 minutes late and cold. I have refunded it in full; you will see "
              "the money within three working days."),
    "web-7": ("Customer: The driver left my order at the wrong building and now it's gone. Nobody answers the phone.",
              "The order was delivered to the wrong building and the phone line did not answer.",
              "We are sorry your order went to the wrong building. Please write back with the time of the delivery so "
              "we can follow up with the delivery team."),
    "4410": ("Customer: I was charged twice for one pizza. Please fix it.", "The customer was charged twice.",
             "Sorry for the double charge. Please write back with the time of the delivery so we can follow up."),
    "4411": ("Customer: Thanks, the new menu looks great! Could you add more vegan options?",
             "The customer praises the new menu and asks for vegan options.",
             "We are sorry to hear about your experience with the new menu."),
    "4412": ("Customer: The chicken arrived completely cold and the box had burst open. Really disappointed.",
             "The chicken arrived cold, its packaging burst.",
             "I'm sorry your chicken arrived cold and the packaging was broken. We will send a new order tonight."),
    "4413": ("Customer: Where is my order? It has been an hour.", "The order is an hour late.",
             "We are sorry your order is late. It is on its way and should arrive within 15 minutes."),
    "4414": (SCRIPT_CHAT, "The pizza arrived cold again.", "Sorry your pizza was cold again. A new one is on its way."),
}
# Sentiment checks: (chat, summary, the model's sentiment, its confidence, why it was sent).
CHECKS = {
    "5501": ("Customer: Great burger, thanks! Delivery was quick.", "The customer liked the burger and the delivery.",
             1, 0.93, CheckReason.SAMPLED),
    "5502": ("Customer: Is the kitchen open on Sunday? The last pizza was fine I guess, a bit late.",
             "The customer asks about Sunday opening hours.", 0, 0.46, CheckReason.LOW_CONFIDENCE),
    "5503": ("Customer: Oh great, another pizza with no cheese. Fantastic service as always.",
             "The customer comments on the pizza and the service.", 1, 0.41, CheckReason.LOW_CONFIDENCE),
}


@pytest.fixture(scope="module")
def chromium():
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("Debian's chromium is not installed (make browser installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Debian's build, not one Playwright would download; as root, Chromium runs only without its sandbox.
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def desk(tmp_path_factory):
    """The desk on the local stack, served on 127.0.0.1, with seven drafts from two model variants and three
    sentiment checks ingested."""
    with LocalStack.start(workdir=tmp_path_factory.mktemp("stack")) as stack:
        stack.create_resources()
        names = stack.resources
        # On a clock that starts 18 minutes after the first draft was made: the screenshots come out the same.
        desk = desk_on(
            f"sqlite:///{tmp_path_factory.mktemp('desk') / 'desk.sqlite3'}", RunningClock(T0 + timedelta(minutes=18)),
            subscription=names.review_desk_subscription,
            replies_topic=names.replies_topic, chats_topic=names.input_topic, bigquery_table=names.reviews_table_name,
            subscriber=stack.subscriber, publisher=stack.publisher, bigquery=stack.bigquery,
        )
        config = uvicorn.Config(create_app(desk), host="127.0.0.1", port=free_port(), log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        wait_for(lambda: server.started, 30, what="desk started")
        publish_reviews(stack, [
            review_message(chat_id, chat=chat, summary=summary, draft=draft, minutes_after=minutes,
                           model_id=BASE if chat_id in {"4410", "4411", "4413"} else TUNED)
            for minutes, (chat_id, (chat, summary, draft)) in enumerate(CHATS.items())
        ] + [
            check_message(chat_id, chat=chat, summary=summary, sentiment=sentiment, confidence=confidence,
                          reason=reason, minutes_after=minutes)
            for minutes, (chat_id, (chat, summary, sentiment, confidence, reason)) in enumerate(CHECKS.items())
        ])
        base_url = f"http://127.0.0.1:{server.config.port}"
        yield stack, base_url
        server.should_exit = True
        thread.join(30)


def _sign_in(page, base_url: str, name: str) -> None:
    page.goto(base_url)
    page.fill("#name", name)
    page.click("text=Start reviewing")
    page.wait_for_selector("table.queue")


def _open(page, chat_id: str) -> None:
    page.click(f"#chat-{chat_id} button:has-text('Open')")
    page.wait_for_selector("form.decide")


def test_agents_decide_drafts_in_a_browser_and_the_decisions_reach_bigquery_and_the_replies_topic(
    chromium, desk, tmp_path
):
    stack, base_url = desk
    names = stack.resources
    context = chromium.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    _sign_in(page, base_url, "Ana")
    def all_listed() -> bool:
        page.reload()
        return page.locator("table.queue tbody tr").count() == len(CHATS)

    wait_for(all_listed, 30, what="all drafts listed")

    # Markup in a chat is shown as text and never runs.
    assert SCRIPT_CHAT.split("\n")[0][:60] in page.locator("#chat-4414 .chat .clamp").inner_text()
    assert page.evaluate("window.owned") is None and "owned" not in page.title()
    assert page.locator("tbody tr").first.get_attribute("data-chat-id") == "88213", "oldest first"
    page.screenshot(path=SCREENSHOTS / "review-queue.png", full_page=True)

    # Approve as drafted, timing the click until the decision is a BigQuery row.
    _open(page, "88213")
    clicked = time.monotonic()
    page.click("#approve")
    wait_for(lambda: any(row["chat_id"] == "88213" for row in stack.rows(names.reviews_table)), 30, interval=0.05)
    _LOGGER.warning("click to BigQuery row: %.2f s", time.monotonic() - clicked)
    assert "Chat 88213: approved as drafted" in page.locator(".flash").inner_text()

    # Edit, then approve.
    _open(page, "web-7")
    page.fill(
        "#text", "We are sorry your order went to the wrong building. We have sent a new one; it arrives by 8 pm."
    )
    # The edited text area renders a little differently from run to run, so this picture is not written into docs/
    # (docs/img/review-draft.png is one such run); the queue's and the stats' are the same every time.
    page.screenshot(path=tmp_path / "review-draft.png")
    page.click("#approve")
    assert "edited and approved" in page.locator(".flash").inner_text()

    # Reject with a reason.
    _open(page, "4410")
    page.check("input[value=draft_unusable]")
    page.click("#reject")
    assert "rejected" in page.locator(".flash").inner_text()

    # Correct the sentiment: a compliment, not a complaint.
    _open(page, "4411")
    page.select_option("#sentiment", "1")
    page.check("input[value=wrong_sentiment]")
    page.click("#reject")

    # Two pages on the same draft: the second is told it was decided, and nothing is overwritten.
    _open(page, "4412")
    second = context.new_page()
    second.goto(f"{base_url}/drafts/4412")
    page.click("#approve")
    second.fill("#text", "A different reply that must never be sent.")
    second.click("#approve")
    assert "already decided by Ana" in second.locator(".alert.conflict").inner_text()

    # Another agent sees that Ana holds the draft she opened.
    _open(page, "4413")
    ben = chromium.new_context().new_page()
    _sign_in(ben, base_url, "Ben")
    assert ben.locator("#chat-4413 .claimed").inner_text() == "Ana is on it"
    ben.context.close()

    page.goto(f"{base_url}/stats")
    page.set_viewport_size({"width": 1360, "height": 560})
    page.screenshot(path=SCREENSHOTS / "review-stats.png", full_page=True)
    context.close()

    decided = {"88213": "approve", "web-7": "edit", "4410": "reject", "4411": "reject", "4412": "approve"}
    rows = wait_for(lambda: (rows := stack.rows(names.reviews_table)) and len(rows) >= len(decided) and rows, 30)
    assert Counter(row["chat_id"] for row in rows) == Counter(list(decided)), "one row per decision"
    by_chat = {row["chat_id"]: row for row in rows}
    assert {chat_id: row["decision"] for chat_id, row in by_chat.items()} == decided
    assert (by_chat["4410"]["reason"], by_chat["4411"]["reason"], by_chat["4411"]["corrected_sentiment"]) == (
        "draft_unusable", "wrong_sentiment", 1
    )
    assert by_chat["web-7"]["edit_distance"] > 0 and by_chat["88213"]["edit_distance"] == 0
    assert {row["reviewer"] for row in rows} == {"Ana"}

    replies = wait_for(lambda: (got := _replies(stack)) and got, 10)
    replies += _replies(stack)
    assert Counter(message.attributes["chat_id"] for message in replies) == Counter(["88213", "web-7", "4412"])
    texts = {message.attributes["chat_id"]: json.loads(message.data)["text"] for message in replies}
    assert texts["web-7"].endswith("it arrives by 8 pm.") and texts["4412"] == CHATS["4412"][2]


def _replies(stack: LocalStack) -> list:
    time.sleep(1)
    return stack.pull(stack.resources.replies_subscription)


def test_agents_check_sentiments_in_a_browser_and_a_chat_corrected_to_negative_goes_back_to_the_pipeline(
    chromium, desk
):
    stack, base_url = desk
    context = chromium.new_context(viewport={"width": 1360, "height": 640})
    page = context.new_page()
    _sign_in(page, base_url, "Ana")

    def all_listed() -> bool:
        page.goto(f"{base_url}/checks")
        return page.locator("table.checks tbody tr").count() == len(CHECKS)

    wait_for(all_listed, 30, what="all checks listed")
    assert page.locator("#check-5502 .confidence").inner_text() == "46%"
    page.screenshot(path=SCREENSHOTS / "review-checks.png", full_page=True)

    # Confirm: the model's label is preselected.
    page.click("#check-5501 a:has-text('Check')")
    assert page.locator("input[name=sentiment][value='1']").is_checked()
    page.click("#save-verdict")
    assert "Chat 5501: confirmed positive." in page.locator(".flash").inner_text()

    # Correct a sarcastic complaint to negative: it goes back to the pipeline for a draft.
    page.click("#check-5503 a:has-text('Check')")
    page.check("input[name=sentiment][value='-1']")
    page.click("#save-verdict")
    assert "corrected to negative. It goes back to the pipeline" in page.locator(".flash").inner_text()
    assert [row.get_attribute("data-chat-id") for row in page.locator("table.checks tbody tr").all()] == ["5502"]
    context.close()

    [sent_back] = wait_for(lambda: stack.pull(stack.resources.input_subscription), 30, what="chat sent back")
    chat = json.loads(sent_back.data)
    assert (sent_back.attributes["chat_id"], chat["chat_message"], chat["correction"]) == (
        "5503", CHECKS["5503"][0], {"sentiment": -1, "summary": CHECKS["5503"][1], "reviewer": "Ana"}
    )
