"""The reply parser finds the JSON a model writes and says exactly why a reply is unusable."""

import pytest

from pipeline.replies import ReplyError, cut_loop, parse_apology, parse_scored_reply, parse_triage_reply


@pytest.mark.parametrize(
    "text",
    [
        '{"sentiment": -1, "summary": "Cold pizza."}',
        '```json\n{"sentiment": -1, "summary": "Cold pizza."}\n```',
        'Here is the result:\n{"sentiment": -1, "summary": "Cold pizza."}\nHope this helps!',
        '{"sentiment": -1, "summary": "Cold pizza."}<end_of_turn>\n<start_of_turn>user',
        '{"note": "draft"} then {"sentiment": -1, "summary": "Cold pizza."}',
        '{"sentiment": -1, "summary": "Cold pizza.", "confidence": 0.9}',
        '[{"sentiment": -1, "summary": "Cold pizza."}]',
    ],
)
def test_finds_the_reply_in_what_models_write(text):
    reply = parse_triage_reply(text)
    assert (reply.sentiment, reply.summary) == (-1, "Cold pizza.")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no JSON object"),
        ("The customer is unhappy.", "no JSON object"),
        ('{"sentiment": -1, "summary": "Cold pizza', "no JSON object"),  # cut off at max_length
        ("{'sentiment': -1, 'summary': 'x'}", "no JSON object"),  # Python, not JSON
        ('{"sentiment": "-1", "summary": "x"}', "sentiment"),
        ('{"sentiment": "negative", "summary": "x"}', "sentiment"),
        ('{"sentiment": 2, "summary": "x"}', "sentiment"),
        ('{"sentiment": 0}', "summary"),
        ('{"sentiment": 0, "summary": ""}', "summary"),
    ],
)
def test_rejects_with_a_reason(text, reason):
    with pytest.raises(ReplyError, match=reason):
        parse_triage_reply(text)


def test_apology_stops_at_end_of_turn():
    draft = parse_apology("We are sorry.<end_of_turn>\n<start_of_turn>user\nmore")
    assert draft.text == "We are sorry."


@pytest.mark.parametrize("text", ["", "   <end_of_turn>", "x" * 5000])
def test_apology_must_be_present_and_short(text):
    with pytest.raises(ReplyError, match="invalid apology"):
        parse_apology(text)


def test_a_scored_reply_takes_the_summary_up_to_the_turn_end():
    reply = parse_scored_reply(-1, " Cold pizza, two hours late.<end_of_turn>ignored")
    assert (reply.sentiment, reply.summary) == (-1, "Cold pizza, two hours late.")


@pytest.mark.parametrize("summary", ["", "  \n", "x" * 513])
def test_a_scored_reply_needs_a_summary_of_sensible_length(summary):
    with pytest.raises(ReplyError, match="invalid reply: summary"):
        parse_scored_reply(0, summary)


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        # Sentence by sentence until the budget ran out mid-word.
        ("Sorry it came cold. Send the order number. Sorry it came cold. Send the or",
         "Sorry it came cold. Send the order number."),
        ("피자가 식어서 죄송합니다. 주문 번호를 알려주세요. 피자가 식어서 죄송합니다. 주문",
         "피자가 식어서 죄송합니다. 주문 번호를 알려주세요."),
        ("Sorry! Sorry! Sorry!", "Sorry!"),
        # A run of words that loops inside one sentence, as a real held-out summary did.
        ("고객이 닭꼬치 속이 핑크색으로 반죽해 닭꼬치 속을 뜯고 닭꼬치 속을 뜯고 닭꼬치 속을 뜯고 닭꼬치 속을",
         "고객이 닭꼬치 속이 핑크색으로 반죽해 닭꼬치 속을 뜯고"),
        ("The fries were very very cold.", "The fries were very very cold."),
        # Nothing repeats: the text stays as it was, line breaks and all.
        ("Sorry it came cold.\nSend the order number.", "Sorry it came cold.\nSend the order number."),
        # An unfinished last sentence that begins no earlier one is kept.
        ("Sorry it came cold. Could you send the", "Sorry it came cold. Could you send the"),
        ("", ""),
    ],
)
def test_a_loop_is_cut_after_its_first_copy(text, kept):
    assert cut_loop(text) == kept
