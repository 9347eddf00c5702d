"""Triage: prompt the model about each chat, then route its reply to `main`, `negative` or `error`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, PredictionResult, RunInference

from handlers.gemma import GemmaModelHandler
from handlers.generator import Generation
from pipeline import METRICS_NAMESPACE as NAMESPACE
from pipeline.checks import NO_CHECKS, CheckPolicy
from pipeline.contracts import (
    DEFAULT_VARIANT,
    ApologyDraft,
    ChatMessage,
    CheckReason,
    ModelReply,
    NegativeChat,
    ReviewMessage,
    SentimentCheck,
    Stage,
    TriageRow,
    utc_now,
)
from pipeline.dead_letters import chat_of, for_chat, for_failed_batch
from pipeline.imitations import readings
from pipeline.prompts import PromptTemplate
from pipeline.replies import ReplyError, cut_loop, parse_apology, parse_scored_reply, parse_triage_reply
from pipeline.tags import CHECK, ERROR, MAIN, NEGATIVE


class CreatePrompts(beam.PTransform):
    """Keys in; `(key, prompt)` pairs out, keyed by the record itself so replies need no join.

    `fields` maps a key to the template's placeholders, or to a list of them: several readings of one record, sent
    as a tuple of prompts (`GemmaModelHandler` answers the most cautious).
    """

    def __init__(self, template: PromptTemplate, fields: Callable[[Any], dict | list[dict]]):
        super().__init__()
        self._template = template
        self._fields = fields

    def expand(self, keys):
        template, fields = self._template, self._fields
        return keys | "Render" >> beam.Map(lambda key: (key, _render(template, fields(key))))


def _render(template: PromptTemplate, fields: dict | list[dict]) -> str | tuple[str, ...]:
    if isinstance(fields, dict):
        return template.render(**fields)
    prompts = tuple(template.render(**values) for values in fields)
    return prompts if len(prompts) > 1 else prompts[0]


def _fitted(result: PredictionResult) -> Generation:
    """The model's reply, or a ReplyError when the prompt left it no room to answer."""
    generation = result.inference
    if not isinstance(generation, Generation):
        # A handler that returns something else (a faulty or swapped-in model) must not crash the step.
        raise ReplyError(f"the model returned a {type(generation).__name__}, not a Generation: {generation!r:.200}")
    if not generation.prompt_fitted:
        raise ReplyError(
            f"the prompt is {generation.prompt_tokens} tokens; max_length {generation.max_length} leaves no room"
        )
    return generation


def _raw_output(result: PredictionResult) -> str:
    """What the model answered, as the dead letter keeps it: a reply's text, or the repr of anything else."""
    inference = result.inference
    return inference.text if isinstance(inference, Generation) else repr(inference)


class _ParseReplyFn(beam.DoFn):
    """Validates one model reply; an invalid one becomes an `error` record that keeps the raw text."""

    stage: Stage
    inference_stage: Stage

    def __init__(self, prompt_version: str):
        self._prompt_version = prompt_version
        self._invalid = beam.metrics.Metrics.counter(NAMESPACE, f"{self.stage.value}_invalid")
        self._loops_cut = beam.metrics.Metrics.counter(NAMESPACE, f"{self.stage.value}_loops_cut")

    def without_loop(self, text: str) -> str:
        """The model's free text with a loop cut off (`cut_loop`), counted for the operator."""
        cut = cut_loop(text)
        if cut != text:
            self._loops_cut.inc()
        return cut

    def process(self, element: tuple[ChatMessage | NegativeChat, PredictionResult]):
        key, result = element
        try:
            parsed = self.parse(_fitted(result))
        except ReplyError as error:
            self._invalid.inc()
            yield beam.pvalue.TaggedOutput(
                ERROR,
                for_chat(
                    chat_of(key), self.stage, str(error), raw_output=_raw_output(result),
                    model_id=result.model_id, prompt_version=self._prompt_version,
                ),
            )
            return
        yield from self.route(key, parsed, result)


class ParseTriageReplyFn(_ParseReplyFn):
    """Routes a triage reply: sentiment 1 or 0 to `main`, -1 to `negative`, anything invalid to `error`."""

    stage = Stage.TRIAGE_REPLY
    inference_stage = Stage.TRIAGE_INFERENCE

    def __init__(
        self, prompt_version: str, labels: dict[str, int] | None = None, checks: CheckPolicy = NO_CHECKS
    ):
        """`labels` maps the options of a scoring prompt to their sentiment; without it replies are JSON.
        `checks` says which positive and neutral chats also go to `check`."""
        super().__init__(prompt_version)
        self._labels = labels
        self._checks = checks
        self._sentiments = {
            value: beam.metrics.Metrics.counter(NAMESPACE, f"sentiment_{name}")
            for value, name in ((1, "positive"), (0, "neutral"), (-1, "negative"))
        }
        self._checks_sent = {
            reason: beam.metrics.Metrics.counter(NAMESPACE, f"checks_sent_{reason.value}") for reason in CheckReason
        }
        self._part_read = beam.metrics.Metrics.counter(NAMESPACE, "sentiment_from_a_part")

    def parse(self, generation: Generation) -> ModelReply:
        if generation.choice is None:
            return parse_triage_reply(generation.text)
        return parse_scored_reply(self._labels[generation.choice], self.without_loop(generation.text))

    def route(self, chat: ChatMessage, reply: ModelReply, result: PredictionResult):
        self._sentiments[reply.sentiment].inc()
        if result.inference.view:
            self._part_read.inc()
        confidence, model_id = result.inference.confidence, result.model_id
        if reply.sentiment < 0:
            yield beam.pvalue.TaggedOutput(NEGATIVE, NegativeChat(
                chat=chat, reply=reply, model_id=model_id, prompt_version=self._prompt_version, confidence=confidence,
            ))
            return
        row = TriageRow(
            chat_id=chat.chat_id, user_id=str(chat.user_id), sentiment=reply.sentiment, summary=reply.summary,
            model_id=model_id, prompt_version=self._prompt_version, processed_at=utc_now(), confidence=confidence,
        )
        yield row
        if reason := self._checks.reason(chat.chat_id, confidence, chat.chat_message):
            self._checks_sent[reason].inc()
            yield beam.pvalue.TaggedOutput(CHECK, SentimentCheck(
                chat_message=chat.chat_message, reason=reason,
                **row.model_dump(include={"chat_id", "user_id", "summary", "sentiment", "confidence", "model_id",
                                          "prompt_version", "processed_at"}),
            ))


class ParseApologyFn(_ParseReplyFn):
    """Turns the apology model's draft into a review message for a human agent."""

    stage = Stage.APOLOGY_REPLY
    inference_stage = Stage.APOLOGY_INFERENCE

    def __init__(self, prompt_version: str, variant: str = DEFAULT_VARIANT):
        super().__init__(prompt_version)
        self._variant = variant

    def parse(self, generation: Generation) -> ApologyDraft:
        return parse_apology(self.without_loop(generation.text))

    def route(self, negative: NegativeChat, draft: ApologyDraft, result: PredictionResult):
        yield ReviewMessage(
            chat_id=negative.chat.chat_id, user_id=str(negative.chat.user_id),
            chat_message=negative.chat.chat_message, summary=negative.reply.summary, draft_reply=draft.text,
            model_id=result.model_id, triage_prompt_version=negative.prompt_version,
            apology_prompt_version=self._prompt_version, variant=self._variant, processed_at=utc_now(),
            confidence=negative.confidence,
        )


class _AskGemma(beam.PTransform):
    """`(key, prompt)` pairs in; the parsed replies on `main_tag` (and `extra_tags`) and `error` out.

    A batch whose inference raises, or takes longer than `timeout_secs`, becomes one `error` record per chat, so
    one bad batch never stalls the stream.
    """

    def __init__(
        self, handler: GemmaModelHandler, parse: _ParseReplyFn, timeout_secs: int | None, main_tag: str,
        *extra_tags: str,
    ):
        super().__init__()
        self._handler = handler
        self._parse = parse
        self._timeout_secs = timeout_secs
        self._tags = (main_tag, *extra_tags)

    def expand(self, keyed_prompts):
        # The same tag for the same preset: triage and apology steps share one copy of the model per worker.
        # With a timeout, Beam runs each batch in a thread it stops waiting for (the thread is abandoned, not
        # killed) and loads the model inside the first batch's time; a model shared across processes that timed
        # out is marked for reloading.
        results, failures = keyed_prompts | "RunInference" >> RunInference(
            KeyedModelHandler(self._handler), model_identifier=self._handler.model_tag
        ).with_exception_handling(timeout=self._timeout_secs)
        failed = failures.failed_inferences | "DeadLetterFailedBatches" >> beam.FlatMap(
            for_failed_batch, self._parse.inference_stage, self._handler.model_id
        )
        main_tag, *extra_tags = self._tags
        parsed = results | "ParseReplies" >> beam.ParDo(self._parse).with_outputs(*extra_tags, ERROR, main=main_tag)
        errors = (parsed[ERROR], failed) | "Errors" >> beam.Flatten()
        return {**{tag: parsed[tag] for tag in self._tags}, ERROR: errors}


def triage_fields(chat: ChatMessage, apart: bool = False) -> list[dict]:
    """The triage prompt's placeholders for a chat; with `apart`, one set per reading of it (`readings`)."""
    texts = readings(chat.chat_message) if apart else [chat.chat_message]
    return [{"chat": text, "user_id": chat.user_id} for text in texts]


def _apology_fields(negative: NegativeChat) -> dict:
    return {"chat": negative.chat.chat_message, "user_id": negative.chat.user_id, "summary": negative.reply.summary}


class Triage(beam.PTransform):
    """Chats in; a dict of `main` (BigQuery rows), `negative` (chats to apologise for), `check` (rows for a person
    to check, per `checks`) and `error` out.

    With `read_apart` (score mode), a chat that imitates the model's answer is also read in parts, and its most
    negative reading wins (`pipeline.imitations.readings`): a forged example cannot carry a complaint with it.
    """

    def __init__(
        self, handler: GemmaModelHandler, template: PromptTemplate, timeout_secs: int | None = None,
        checks: CheckPolicy = NO_CHECKS, read_apart: bool = True,
    ):
        super().__init__()
        self._template = template
        self._fields = functools.partial(triage_fields, apart=read_apart and template.scoring is not None)
        labels = template.scoring.labels if template.scoring else None
        parse = ParseTriageReplyFn(template.version, labels, checks)
        self._ask = _AskGemma(handler, parse, timeout_secs, MAIN, NEGATIVE, CHECK)

    def expand(self, chats):
        return chats | "CreatePrompts" >> CreatePrompts(self._template, self._fields) | "Gemma" >> self._ask


class DraftApologies(beam.PTransform):
    """Negative chats in; a dict of `negative` (review messages with the draft, of `variant`) and `error` out."""

    def __init__(
        self, handler: GemmaModelHandler, template: PromptTemplate, timeout_secs: int | None = None,
        variant: str = DEFAULT_VARIANT,
    ):
        super().__init__()
        self._template = template
        self._ask = _AskGemma(handler, ParseApologyFn(template.version, variant), timeout_secs, NEGATIVE)

    def expand(self, negatives):
        return negatives | "CreatePrompts" >> CreatePrompts(self._template, _apology_fields) | "Gemma" >> self._ask
