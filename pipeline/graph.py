"""The triage graph shared by the batch, streaming and replay jobs: payloads in, `main`/`negative`/`check`/`error`
out."""

from __future__ import annotations

import apache_beam as beam

from handlers.gemma import GemmaModelHandler
from pipeline.checks import NO_CHECKS, CheckPolicy
from pipeline.contracts import ChatMessage, ModelReply, NegativeChat
from pipeline.inputs import ParseChats
from pipeline.models import apology_model, triage_model
from pipeline.options import TriageOptions
from pipeline.prompts import PromptTemplate
from pipeline.tags import CHECK, ERROR, MAIN, NEGATIVE
from pipeline.triage import DraftApologies, Triage

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
        apology_handler: GemmaModelHandler,
        triage_prompt: PromptTemplate,
        apology_prompt: PromptTemplate,
        inference_timeout_secs: int | None = None,
        checks: CheckPolicy = NO_CHECKS,
    ):
        """`inference_timeout_secs`: a batch that takes longer (model load included) is dead-lettered. `checks`:
        which positive and neutral chats also go to `check`."""
        super().__init__()
        self._triage = Triage(triage_handler, triage_prompt, inference_timeout_secs, checks)
        self._apologies = DraftApologies(apology_handler, apology_prompt, inference_timeout_secs)

    @classmethod
    def from_options(cls, options: TriageOptions) -> TriageChats:
        """The graph as the flags describe it: model presets and their prompts, samplers, batching."""
        checks = CheckPolicy(options.check_below_confidence, options.check_sample_rate)
        return cls.from_models(triage_model(options), apology_model(options), options.inference_timeout_secs, checks)

    @classmethod
    def from_models(
        cls,
        triage: tuple[GemmaModelHandler, PromptTemplate],
        apology: tuple[GemmaModelHandler, PromptTemplate],
        inference_timeout_secs: int | None = None,
        checks: CheckPolicy = NO_CHECKS,
    ) -> TriageChats:
        """The graph on each step's handler and prompt, as `pipeline.models` makes them."""
        (triage_handler, triage_prompt), (apology_handler, apology_prompt) = triage, apology
        if triage_handler.model_tag == apology_handler.model_tag:
            # One copy of the weights for both steps, warmed for both at load: the first negative chat compiles nothing.
            triage_handler.share_model_with(apology_handler)
        return cls(triage_handler, apology_handler, triage_prompt, apology_prompt, inference_timeout_secs, checks)

    def expand(self, payloads):
        parsed = payloads | "ParseAndValidate" >> ParseChats()
        split = parsed.chats | "SplitCorrected" >> beam.FlatMap(split_corrected).with_outputs(NEGATIVE, main="chats")
        triaged = split.chats | "Triage" >> self._triage
        negatives = (triaged[NEGATIVE], split[NEGATIVE]) | "AllNegatives" >> beam.Flatten()
        apologies = negatives | "DraftApologies" >> self._apologies
        errors = (parsed[ERROR], triaged[ERROR], apologies[ERROR]) | "CollectErrors" >> beam.Flatten()
        return {MAIN: triaged[MAIN], NEGATIVE: apologies[NEGATIVE], CHECK: triaged[CHECK], ERROR: errors}
