"""GemmaModelHandler loads a KerasHub preset and answers a whole batch in one generate() call."""

from dataclasses import replace

import pytest

from handlers.gemma import Choice, GemmaModelHandler, batch_sizes, length_buckets
from pipeline.graph import handler_prompt_args
from pipeline.prompts import load_prompt
from tests.tiny_gemma import GENERATE_PROMPT, SCORE_PROMPT, SCORED_LESSONS, TRIAGE_LESSONS


@pytest.fixture(scope="module")
def handler_and_model(tiny_gemma):
    handler = GemmaModelHandler(tiny_gemma, max_length=384, share_across_processes=False)
    return handler, handler.load_model()


def _prompts():
    triage = load_prompt(GENERATE_PROMPT)
    return [triage.render(chat=chat, user_id=user) for _, user, chat, _ in TRIAGE_LESSONS]


def test_batch_replies_in_order_without_the_prompt(handler_and_model):
    handler, model = handler_and_model
    prompts = _prompts()
    results = list(handler.run_inference(prompts, model))
    assert [r.example for r in results] == prompts
    assert [r.inference.text.removesuffix("<end_of_turn>") for r in results] == [l[3] for l in TRIAGE_LESSONS]
    assert all(r.model_id == handler.model_id for r in results)
    assert all(r.inference.prompt_fitted for r in results)


def test_a_choice_picks_the_likeliest_option_then_generates_after_it(tiny_gemma):
    prompt = load_prompt(SCORE_PROMPT)
    handler = GemmaModelHandler(tiny_gemma, max_length=384, share_across_processes=False, **handler_prompt_args(prompt))
    results = handler.run_inference([prompt.render(chat=chat) for _, _, chat, _ in TRIAGE_LESSONS], handler.load_model())
    assert [(r.inference.choice, r.inference.text) for r in results] == [
        (label, summary) for _, label, summary in SCORED_LESSONS
    ]


def test_a_choice_read_from_a_short_prompt_continues_after_the_long_one(tiny_gemma):
    prompt = load_prompt(SCORE_PROMPT)
    args, short_head = handler_prompt_args(prompt), "Sentiment of a chat.\n"
    model = GemmaModelHandler(tiny_gemma, share_across_processes=False).load_model()
    for (_, _, chat, _), (_, label, summary) in zip(TRIAGE_LESSONS, SCORED_LESSONS):
        # One option, so the pick is known: the tiny model never saw the short prompt and would guess.
        choice = replace(args["choice"], options=(label,), continue_head=(short_head, prompt.head()))
        handler = GemmaModelHandler(
            tiny_gemma, max_length=384, share_across_processes=False, stop=args["stop"], choice=choice
        )
        [result] = handler.run_inference([short_head + prompt.render(chat=chat).removeprefix(prompt.head())], model)
        # The tiny model learned its summaries after the long prompt only: they come back word for word.
        assert (result.inference.choice, result.inference.text) == (label, summary)


def test_label_offsets_move_the_choice(tiny_gemma):
    prompt = load_prompt(SCORE_PROMPT)
    label = next(iter(prompt.scoring.labels))
    handler = GemmaModelHandler(
        tiny_gemma, max_length=384, share_across_processes=False, choose_only=True,
        **handler_prompt_args(prompt, {label: 1000.0}),
    )
    results = handler.run_inference([prompt.render(chat=chat) for _, _, chat, _ in TRIAGE_LESSONS], handler.load_model())
    assert [r.inference.choice for r in results] == [label] * len(TRIAGE_LESSONS)


def test_options_must_be_single_tokens(tiny_gemma):
    handler = GemmaModelHandler(
        tiny_gemma, share_across_processes=False, choice=Choice((" negative", " pineapple pizza"))
    )
    with pytest.raises(ValueError, match="' pineapple pizza' is [0-9]+ tokens"):
        handler.run_inference(["Sentiment:"], handler.load_model())


def test_inference_args_override_the_constructor(handler_and_model):
    handler, model = handler_and_model
    [result] = handler.run_inference(_prompts()[:1], model, {"max_length": 64})
    assert result.inference.max_length == 64
    assert not result.inference.prompt_fitted


def test_unknown_inference_args_are_refused(handler_and_model):
    handler, _ = handler_and_model
    with pytest.raises(ValueError, match="temperature"):
        handler.validate_inference_args({"temperature": 0.3})


def test_a_sampler_config_is_accepted(handler_and_model):
    handler, model = handler_and_model
    sampler = {"class_name": "top_k", "config": {"k": 1, "seed": 0}}
    [top_1] = handler.run_inference(_prompts()[1:2], model, {"sampler": sampler})
    [greedy] = handler.run_inference(_prompts()[1:2], model, {"sampler": "greedy"})
    assert top_1.inference.text == greedy.inference.text, "top-1 sampling is greedy decoding"


def test_model_id_defaults_to_the_preset_name():
    assert GemmaModelHandler("gs://bucket/models/gemma2_instruct_2b_en/").model_id == "gemma2_instruct_2b_en"
    assert GemmaModelHandler("kaggle://google/gemma-2/keras/x", model_id="prod").model_id == "prod"


@pytest.mark.slow
def test_the_real_gemma3_answers_a_batch_in_one_call(gemma3_preset):
    handler = GemmaModelHandler(str(gemma3_preset), max_length=48, share_across_processes=False)
    prompts = ["Question: What is the capital of France?\nAnswer:", "Question: What is 2 + 2?\nAnswer:"]
    first, second = handler.run_inference(prompts, handler.load_model())
    assert "Paris" in first.inference.text
    assert not first.inference.text.startswith("Question"), "the prompt is stripped by token position"
    assert "4" in second.inference.text


def test_length_buckets_and_batch_sizes_are_a_few_fixed_values():
    assert length_buckets(512) == (64, 96, 128, 192, 256, 384, 512)
    assert length_buckets(500) == (64, 96, 128, 192, 256, 384, 500), "max_length is always the last bucket"
    assert batch_sizes(8) == (1, 2, 4, 8)
    assert batch_sizes(6) == (1, 2, 4, 6)
    assert batch_sizes(1) == (1,)


def test_generate_runs_at_the_smallest_bucket_that_holds_the_longest_prompt_and_the_reply(tiny_gemma):
    handler = GemmaModelHandler(tiny_gemma, max_length=384, reply_tokens=32, share_across_processes=False)
    results = handler.run_inference(_prompts(), handler.load_model())
    longest = max(r.inference.prompt_tokens for r in results)
    [length] = {r.inference.sequence_length for r in results}
    assert length in length_buckets(384) and length >= longest + 32
    assert [r.inference.text.removesuffix("<end_of_turn>") for r in results] == [l[3] for l in TRIAGE_LESSONS]


def test_a_prompt_that_fits_no_bucket_is_not_run_and_keeps_the_no_room_verdict(handler_and_model):
    handler, model = handler_and_model
    prompts = _prompts()
    too_long = prompts[0] + " pizza" * 400
    results = handler.run_inference([too_long, prompts[1]], model)
    assert not results[0].inference.prompt_fitted and results[0].inference.text == ""
    assert results[0].inference.sequence_length == 0, "the model never saw it"
    assert results[1].inference.prompt_fitted and 0 < results[1].inference.sequence_length <= 384


def test_varied_batches_compile_no_new_shapes_after_warm_up(tiny_gemma):
    from benchmarks.compiles import CompileCounter

    prompt = load_prompt(SCORE_PROMPT)
    handler = GemmaModelHandler(
        tiny_gemma, max_length=384, reply_tokens=16, max_batch_size=4, share_across_processes=False,
        **handler_prompt_args(prompt),
    )
    model = handler.load_model()
    chats = [chat for _, _, chat, _ in TRIAGE_LESSONS]
    handler.run_inference([prompt.render(chat=chat) for chat in chats], model)  # warm-up: batch 4
    with CompileCounter() as compiles:
        # Other chats and lengths in the same buckets, 3 prompts padded to 4.
        varied = [prompt.render(chat=chat + " Thanks." * n) for n, chat in enumerate(chats[:3])]
        results = handler.run_inference(varied, model)
    assert len(results) == 3
    assert compiles.count == 0, compiles.by_function


def test_handlers_of_one_preset_and_sampler_share_a_model_tag(tiny_gemma):
    triage = GemmaModelHandler(tiny_gemma, max_length=384, metrics_namespace="triage_model")
    apology = GemmaModelHandler(tiny_gemma + "/", max_length=768, metrics_namespace="apology_model")
    assert triage.model_tag == apology.model_tag
    assert GemmaModelHandler(tiny_gemma, sampler="top_k").model_tag != triage.model_tag
    assert GemmaModelHandler("gs://other/preset").model_tag != triage.model_tag
