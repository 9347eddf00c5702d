"""The triage graph shared by the batch, streaming and replay jobs: payloads in, `main`/`negative`/`check`/`error`
out."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import apache_beam as beam

from handlers.gemma import GemmaModelHandler
from pipeline.checks import NO_CHECKS, CheckPolicy
from pipeline.contracts import ChatMessage, ModelReply, NegativeChat
from pipeline.inputs import ParseChats
from pipeline.models import apology_steps, triage_model
from pipeline.options import TriageOptions
from pipeline.prompts import PromptTemplate
from pipeline.tags import CHECK, ERROR, MAIN, NEGATIVE
from pipeline.triage import Triage
from pipeline.variants import ApologyStep, apology_variants, draft_apologies

# The triage prompt version of a negative chat an agent labeled: its review message says the label is a person's.
AGENT_LABEL = "agent"


def split_corrected(chat: ChatMessage):
    """A chat the review desk sent back with a correction becomes a negative chat as it is (a person labeled it);
    any other goes on to the model."""
    if chat.correction is None:
        yield chat
        return
    reply = ModelReply(sentiment=chat.correction.sentiment, summary=chat.correction.summary)
    yield beam.pvalue.TaggedOutput(
        NEGATIVE, NegativeChat(chat=chat, reply=reply, model_id=AGENT_LABEL, prompt_version=AGENT_LABEL)
    )


class TriageChats(beam.PTransform):
    """Raw chat payloads in; a dict of `main` (TriageRow), `negative` (ReviewMessage), `check` (SentimentCheck),
    `error` (DeadLetter) out."""

    def __init__(
        self,
        triage_handler: GemmaModelHandler,
        triage_prompt: PromptTemplate,
        apologies: Sequence[ApologyStep],
        inference_timeout_secs: int | None = None,
        checks: CheckPolicy = NO_CHECKS,
        read_apart: bool = True,
    ):
        """`apologies`: one step per apology variant. `inference_timeout_secs`: a batch that takes longer (model
        load included) is dead-lettered. `checks`: which positive and neutral chats also go to `check`.
        `read_apart`: see `Triage`."""
        super().__init__()
        self._triage = Triage(triage_handler, triage_prompt, inference_timeout_secs, checks, read_apart)
        self._apologies = draft_apologies(apologies, inference_timeout_secs)

    @classmethod
    def from_options(cls, options: TriageOptions) -> TriageChats:
        """The graph as the flags describe it: model presets and their prompts, samplers, batching, variants,
        sentiment checks."""
        checks = CheckPolicy(options.check_below_confidence, options.check_sample_rate, options.check_imitations)
        return cls.from_models(
            triage_model(options), apology_steps(options, apology_variants(options)), options.inference_timeout_secs,
            checks, options.read_imitations_apart,
        )

    @classmethod
    def from_models(
        cls,
        triage: tuple[GemmaModelHandler, PromptTemplate],
        apologies: Sequence[ApologyStep],
        inference_timeout_secs: int | None = None,
        checks: CheckPolicy = NO_CHECKS,
        read_apart: bool = True,
    ) -> TriageChats:
        """The graph on each step's handler and prompt, as `pipeline.models` makes them."""
        triage_handler, triage_prompt = triage
        handlers = [triage_handler, *(step.handler for step in apologies)]
        for first, second in itertools.combinations(handlers, 2):
            if first.model_tag == second.model_tag:
                # One copy of the weights for the steps of a preset and sampler, warmed for all of them at load:
                # the first negative chat of any of them compiles nothing.
                first.share_model_with(second)
        return cls(triage_handler, triage_prompt, apologies, inference_timeout_secs, checks, read_apart)

    def expand(self, payloads):
        parsed = payloads | "ParseAndValidate" >> ParseChats()
        split = parsed.chats | "SplitCorrected" >> beam.FlatMap(split_corrected).with_outputs(NEGATIVE, main="chats")
        triaged = split.chats | "Triage" >> self._triage
        negatives = (triaged[NEGATIVE], split[NEGATIVE]) | "AllNegatives" >> beam.Flatten()
        apologies = negatives | "DraftApologies" >> self._apologies
        errors = (parsed[ERROR], triaged[ERROR], apologies[ERROR]) | "CollectErrors" >> beam.Flatten()
        return {MAIN: triaged[MAIN], NEGATIVE: apologies[NEGATIVE], CHECK: triaged[CHECK], ERROR: errors}
