"""`training.text_metrics` measures summaries and drafts against references, in English and Korean."""

import pytest

from training import text_metrics
from training.text_metrics import Written

KOREAN_CHAT = "고객: 피자가 한 시간 늦게 왔어요."
KOREAN_REPLY = "배달이 늦어 죄송합니다. 주문 번호를 알려 주세요."
ENGLISH_REPLY = "We are sorry your pizza was late. Please send us your order number."


def test_key_terms_match_ignoring_case_in_english_and_korean():
    assert text_metrics.names_problem("Your order arrived LATE.", ["cold", "late"])
    assert text_metrics.names_problem(KOREAN_REPLY, ["늦"])
    assert not text_metrics.names_problem("We are sorry for the trouble.", ["late", "80 minutes"])
    assert not text_metrics.names_problem("Anything at all.", [])


def test_languages_are_english_korean_or_unknown():
    assert text_metrics.language_of(KOREAN_REPLY) == "ko"
    assert text_metrics.language_of(ENGLISH_REPLY) == "en"
    assert text_metrics.language_of("12345") is None


def test_a_reply_counts_in_the_customers_language_only_when_it_is_in_it():
    assert text_metrics.in_language(KOREAN_REPLY, "ko")
    assert not text_metrics.in_language(ENGLISH_REPLY, "ko")
    assert not text_metrics.in_language("12345", None), "an unknown language matches nothing"


def test_a_six_word_run_shared_by_two_of_four_replies_gives_a_half():
    replies = [
        "Please send us your order number and a photo.",
        # The same run, other case and punctuation; twice in this reply, still counted once.
        "Sorry! please, send us your order number. Please send us your order number.",
        # Another run, in one reply only.
        "We're sorry: we'll check your order right away.",
        KOREAN_REPLY,
    ]
    assert text_metrics.common_run(replies) == ("please send us your order number", 0.5)


def test_a_korean_run_counts_by_space_separated_words():
    replies = [KOREAN_REPLY, "정말 " + KOREAN_REPLY, "포장이 찢어져 죄송합니다. 사진을 보내 주세요."]
    assert text_metrics.common_run(replies) == ("배달이 늦어 죄송합니다 주문 번호를 알려", 0.6667)


def test_no_run_without_six_words():
    assert text_metrics.common_run(["Sorry about that.", "Thanks!"]) == (None, 0.0)


def test_length_is_words_or_korean_characters_without_spaces():
    assert text_metrics.length("We are sorry for the delay.", "en") == 6
    assert text_metrics.length("배달이 늦어 죄송합니다", "ko") == 10
    texts = ["Sorry about the cold pizza.", "We are sorry your order was late.", "배달이 늦어 죄송합니다"]
    assert text_metrics.mean_lengths(texts) == {"en": 6.0, "ko": 10.0}


def test_chrf_is_100_for_the_reference_and_0_without_a_shared_character():
    assert text_metrics.corpus_chrf([ENGLISH_REPLY, KOREAN_REPLY], [ENGLISH_REPLY, KOREAN_REPLY]) == 100.0
    assert text_metrics.corpus_chrf(["배달이 늦어 죄송합니다"], ["We are sorry"]) == 0.0
    assert text_metrics.corpus_chrf([], []) is None
    partial = text_metrics.sentence_chrf("We are sorry your pizza was cold.", ENGLISH_REPLY)
    assert 0 < partial < 100


def _row(chat_id, text, reference=ENGLISH_REPLY, key_terms=("late",), language="en", chat="Customer: late pizza."):
    return Written(chat_id, chat, reference, text, key_terms, language)


def test_scores_count_only_the_written_texts_and_the_chats_with_key_terms():
    rows = [
        _row("1", ENGLISH_REPLY),
        _row("2", "We are sorry for the trouble.", key_terms=()),
        _row("3", None),
        # No language given: lingua reads the chat as Korean, and the English draft is not in it.
        _row("4", "Sorry, your pizza was late.", reference=KOREAN_REPLY, key_terms=("늦", "late"), language=None,
             chat=KOREAN_CHAT),
    ]
    scores = text_metrics.score_texts(rows)
    assert (scores.references, scores.written) == (4, 3)
    assert scores.names_problem == 1.0, "row 2 has no key terms, so it is not judged"
    assert scores.in_chat_language == 0.6667
    assert scores.chrf == text_metrics.corpus_chrf(
        [ENGLISH_REPLY, "We are sorry for the trouble.", "Sorry, your pizza was late."],
        [ENGLISH_REPLY, ENGLISH_REPLY, KOREAN_REPLY],
    )
    # Only the first draft has six words: its first run is the most common, in one draft of three.
    assert (scores.boilerplate_run, scores.boilerplate_share) == ("we are sorry your pizza was", 0.3333)
    assert scores.mean_length == {"en": pytest.approx((13 + 6 + 5) / 3, abs=0.05)}


def test_nothing_written_gives_no_figures():
    scores = text_metrics.score_texts([_row("1", None)])
    assert (scores.references, scores.written, scores.chrf, scores.names_problem) == (1, 0, None, None)
    assert (scores.in_chat_language, scores.boilerplate_share, scores.mean_length) == (None, None, {})


def test_the_worst_drafts_are_the_five_lowest_by_chrf_with_chat_and_reference():
    drafts = [
        "We are sorry your pizza was late.", "Thank you!", KOREAN_REPLY, "Sorry.", ENGLISH_REPLY, "Hello there.", None,
    ]
    rows = [_row(str(i), draft) for i, draft in enumerate(drafts)]
    worst = text_metrics.worst(rows)
    expected = sorted(
        (text_metrics.sentence_chrf(draft, ENGLISH_REPLY), str(i)) for i, draft in enumerate(drafts) if draft
    )[:5]
    assert [(reply.chrf, reply.id) for reply in worst] == expected
    assert "4" not in {reply.id for reply in worst}, "the draft equal to its reference is the best"
    assert all((reply.chat, reply.reference) == ("Customer: late pizza.", ENGLISH_REPLY) for reply in worst)
    assert worst[0].draft == KOREAN_REPLY, "it shares only the full stops with the reference"


def test_a_run_keeps_the_apostrophes_within_words():
    assert text_metrics.common_run(["I'm sorry to hear that, truly."]) == ("i'm sorry to hear that truly", 1.0)
    assert text_metrics.common_run(["I\u2019m sorry to hear that, truly."])[0] == "i\u2019m sorry to hear that truly"
