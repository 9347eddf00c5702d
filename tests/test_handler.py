"""GemmaModelHandler loads a KerasHub preset and answers a whole batch in one generate() call."""

from dataclasses import replace

import pytest

from handlers.choice import Choice
from handlers.gemma import GemmaModelHandler
from handlers.shapes import batch_sizes, length_buckets
from pipeline.models import handler_prompt_args
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
    assert [r.inference.text.removesuffix("<end_of_turn>") for r in results] == [
        lesson[3] for lesson in TRIAGE_LESSONS
    ]
    assert all(r.model_id == handler.model_id for r in results)
    assert all(r.inference.prompt_fitted for r in results)


def test_a_choice_picks_the_likeliest_option_then_generates_after_it(tiny_gemma):
    prompt = load_prompt(SCORE_PROMPT)
    handler = GemmaModelHandler(tiny_gemma, max_length=384, share_across_processes=False, **handler_prompt_args(prompt))
    results = handler.run_inference(
        [prompt.render(chat=chat) for _, _, chat, _ in TRIAGE_LESSONS], handler.load_model()
    )
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
    results = handler.run_inference(
        [prompt.render(chat=chat) for _, _, chat, _ in TRIAGE_LESSONS], handler.load_model()
    )
    assert [r.inference.choice for r in results] == [label] * len(TRIAGE_LESSONS)


def test_options_must_be_single_tokens(tiny_gemma):
    handler = GemmaModelHandler(
        tiny_gemma, share_across_processes=False, choice=Choice((" negative", " pineapple pizza"))
    )
    with pytest.raises(ValueError, match=r"' pineapple pizza' is [0-9]+ tokens"):
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
    assert [r.inference.text.removesuffix("<end_of_turn>") for r in results] == [
        lesson[3] for lesson in TRIAGE_LESSONS
    ]


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


def test_reachable_lengths_and_scoring_widths_start_at_the_shortest_prompts_bucket():
    from handlers.shapes import reachable_lengths, scoring_widths

    assert reachable_lengths(330, 512, 128) == (512,), "330 + 128 needs 512, which is max_length"
    assert reachable_lengths(170, 512, 128) == (384, 512)
    assert reachable_lengths(170, 500, None) == (500,), "without a reply budget generate() runs at max_length"
    assert scoring_widths(330, 512) == (384, 512)
    assert scoring_widths(330, 500) == (384, 512), "the scoring pass is not capped at max_length"


def test_after_the_warm_up_at_load_a_varied_stream_compiles_nothing(tiny_gemma):
    # Score mode, whose warm-up covers the most: the scoring widths, the prefix cache's and generate()'s shapes
    # (generate mode's shapes are generate()'s alone, which the real model's test below covers).
    from benchmarks.compiles import CompileCounter
    from pipeline.models import apology_model, triage_model
    from pipeline.options import TriageOptions
    from tests.tiny_gemma import APOLOGY_LESSON

    options = TriageOptions([
        f"--model={tiny_gemma}", "--model_family=instruct", "--sentiment_mode=score", "--max_length=768",
        "--max_batch_size=4", "--share_model_across_processes=false", "--warm_up=true",
    ])
    handler, prompt = triage_model(options)
    apology, apology_prompt = apology_model(options)
    handler.share_model_with(apology)  # as TriageChats does: one model, which the triage step loads
    with CompileCounter() as compiles:
        model = handler.load_model()
        warm_up_compiles = compiles.count
        chats = [chat for _, _, chat, _ in TRIAGE_LESSONS]
        # Sizes 3 (padded to 4), 1, 2 and 4; prompts in each length bucket (384, 512, 768), and one too long to run.
        lengths = set()
        for size, extra in (
            (3, " Thanks."), (1, " Why?" * 30), (2, " It was late again." * 20), (4, ""), (1, " ok" * 900)
        ):
            batch = [prompt.render(chat=chat + extra, user_id=7) for chat in chats[:size]]
            results = handler.run_inference(batch, model)
            lengths |= {r.inference.sequence_length for r in results}
        _, user_id, summary, _ = APOLOGY_LESSON
        assert apology.load_model() is model, "one copy of the weights for both steps"
        drafts = apology.run_inference(
            [apology_prompt.render(chat=chats[0], user_id=user_id, summary=summary)] * 3, model
        )
    assert warm_up_compiles > 0
    assert drafts[0].inference.prompt_fitted
    assert {0, 512, 768} <= lengths, "two buckets at least, and a prompt that fits none"
    assert compiles.count == warm_up_compiles, dict(compiles.by_function)


def test_two_steps_sharing_a_model_load_it_once_per_process_even_without_sharing_across_processes(tiny_gemma):
    from apache_beam.internal import pickler

    triage = GemmaModelHandler(tiny_gemma, max_length=384, share_across_processes=False)
    apology = GemmaModelHandler(tiny_gemma, max_length=768, share_across_processes=False)
    triage.share_model_with(apology)
    # Beam ships each step's handler in a DoFn of its own; Beam's own Shared handle would load one model per step.
    shipped_triage, shipped_apology = (pickler.loads(pickler.dumps(handler)) for handler in (triage, apology))
    assert shipped_apology.load_model() is shipped_triage.load_model()
    with pytest.raises(ValueError, match="different models"):
        triage.share_model_with(GemmaModelHandler(tiny_gemma, sampler="top_k"))


@pytest.mark.slow
def test_the_real_gemma3_compiles_nothing_after_its_warm_up(gemma3_preset):
    from benchmarks.compiles import CompileCounter

    template = "Question: {}\nAnswer:"
    handler = GemmaModelHandler(
        str(gemma3_preset), max_length=128, reply_tokens=16, max_batch_size=1, stop=("\n",),
        share_across_processes=False, warm_up_prompt=template.format("ok"),
    )
    with CompileCounter() as compiles:
        model = handler.load_model()
        warm_up_compiles = compiles.count
        # Prompts of 13, 62, about 87 and 167 tokens: with the reply budget, buckets 64, 96, 128 and none.
        questions = ["What is the capital of France?", "Name a colour." * 14, "What is 2 + 2? " * 10, "Why? " * 80]
        lengths, replies = set(), []
        # One prompt a batch (the tiny model's test varies the batch sizes): the warm-up compiles half the shapes.
        for batch in ([question] for question in [*questions, questions[1]]):
            results = handler.run_inference([template.format(q) for q in batch], model)
            lengths |= {r.inference.sequence_length for r in results}
            replies += [r.inference.text for r in results]
    assert warm_up_compiles > 0
    assert lengths == {0, 64, 96, 128}, "every bucket the warm-up ran, and a prompt that fits none"
    assert compiles.count == warm_up_compiles, dict(compiles.by_function)
    assert "Paris" in replies[0]
