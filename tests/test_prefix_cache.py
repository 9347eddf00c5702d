"""The model's prefix cache gives the answers of the uncached path, prefilling each head once."""

import json
from pathlib import Path

import pytest

from handlers.gemma import GemmaModelHandler
from pipeline.models import handler_prompt_args
from pipeline.prompts import load_prompt
from tests.tiny_gemma import APOLOGY_LESSON, APOLOGY_PROMPT, GENERATE_PROMPT, SCORE_PROMPT, TRIAGE_LESSONS

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "chats.jsonl"


def _answers(preset: str, prompt_name: str, prompts_of, *, prefix_cache: bool, max_length=384, reply_tokens=32):
    """(choice, text, sequence length) of each prompt, and what the model ran."""
    prompt = load_prompt(prompt_name)
    handler = GemmaModelHandler(
        preset, max_length=max_length, reply_tokens=reply_tokens, share_across_processes=False,
        prefix_cache=prefix_cache, **handler_prompt_args(prompt),
    )
    model = handler.load_model()
    results = handler.run_inference(prompts_of(prompt), model)
    return [(r.inference.choice, r.inference.text, r.inference.sequence_length) for r in results], model.usage()


def _lessons(prompt):
    return [prompt.render(chat=chat, user_id=user) for _, user, chat, _ in TRIAGE_LESSONS]


def _apologies(prompt):
    _, user_id, summary, _ = APOLOGY_LESSON
    return [prompt.render(chat=chat, user_id=user_id, summary=summary) for _, _, chat, _ in TRIAGE_LESSONS]


@pytest.mark.parametrize(("prompt_name", "prompts_of"), [
    (SCORE_PROMPT, _lessons), (GENERATE_PROMPT, _lessons), (APOLOGY_PROMPT, _apologies),
])
def test_cached_answers_are_the_uncached_ones_for_fewer_prefilled_tokens(tiny_gemma, prompt_name, prompts_of):
    cached, cached_usage = _answers(tiny_gemma, prompt_name, prompts_of, prefix_cache=True)
    uncached, uncached_usage = _answers(tiny_gemma, prompt_name, prompts_of, prefix_cache=False)
    assert cached == uncached
    spent = lambda usage: usage.get("scored_tokens", 0) + usage.get("prefilled_tokens", 0)  # noqa: E731
    assert spent(cached_usage) < spent(uncached_usage)
    assert "generate_s" not in cached_usage, "every prompt started with its cached head"
    if prompt_name == SCORE_PROMPT:
        assert all(choice for choice, _, _ in cached)
        assert "prefilled_tokens" not in cached_usage, "the summary continued the scoring pass's cache"


def test_a_prompt_without_a_cached_head_takes_the_uncached_path(tiny_gemma):
    headless = lambda prompt: [text.removeprefix(prompt.head()) for text in _lessons(prompt)[:2]]  # noqa: E731
    cached, usage = _answers(tiny_gemma, GENERATE_PROMPT, headless, prefix_cache=True)
    uncached, _ = _answers(tiny_gemma, GENERATE_PROMPT, headless, prefix_cache=False)
    assert cached == uncached
    assert usage["generate_s"] > 0 and "decode_s" not in usage


@pytest.mark.slow
def test_the_real_gemma3_gives_the_same_labels_and_texts_cached_and_uncached(gemma3_preset):
    [chat] = [json.loads(line)["chat_message"] for line in SAMPLES.read_text("utf-8").splitlines()[:1]]
    # Long enough that its prompt runs past the 512-token sliding window of Gemma 3's local layers (the tiny model's
    # tests above cover short prompts).
    long_chat = " ".join([chat] * 6)
    render = lambda prompt: [prompt.render(chat=long_chat)]  # noqa: E731
    (cached, cached_usage), (uncached, uncached_usage) = (
        _answers(str(gemma3_preset), "base/triage_score", render, prefix_cache=on, max_length=768, reply_tokens=8)
        for on in (True, False)
    )
    assert cached == uncached
    assert max(length for _, _, length in cached) > 512
    assert cached_usage["scored_tokens"] < uncached_usage["scored_tokens"]
    assert "prefilled_tokens" not in cached_usage, "label and summary: one prefill"


def _generate_prompts():
    prompt = load_prompt(GENERATE_PROMPT)
    return prompt, [prompt.render(chat=chat, user_id=user) for _, user, chat, _ in TRIAGE_LESSONS]


def test_a_batch_of_prompts_of_different_lengths_decodes_for_its_longest_reply_only(tiny_gemma):
    prompt, prompts = _generate_prompts()
    handler = GemmaModelHandler(tiny_gemma, max_length=384, share_across_processes=False, **handler_prompt_args(prompt))
    model = handler.load_model()
    replies = [result.inference.text for result in handler.run_inference(prompts, model)]
    lengths = model.count_tokens(prompts)
    assert max(lengths) - min(lengths) >= 3, "the test needs prompts of different lengths"
    # Each row decodes at its own positions: one step per token of the longest reply (its stop token, the tiny
    # model's `<end_of_turn>`, is text of the reply).
    assert model.usage()["decoded_tokens"] == len(prompts) * max(model.count_tokens(replies))


def test_decoding_stops_at_a_token_that_holds_a_stop_text(tiny_gemma):
    prompt, prompts = _generate_prompts()
    _, _, _, taught = TRIAGE_LESSONS[1]
    handler = GemmaModelHandler(
        tiny_gemma, max_length=384, share_across_processes=False, stop=["burg"], heads=[prompt.head()]
    )
    model = handler.load_model()
    [result] = handler.run_inference(prompts[1:2], model)
    assert result.inference.text == taught.split("burg")[0]
    # " burger" is one token of the tiny model's: decoding ends with it, not at the end of the taught reply.
    assert model.usage()["decoded_tokens"] == model.count_tokens([result.inference.text + "burger"])[0]
