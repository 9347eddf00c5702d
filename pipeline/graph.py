"""The triage graph shared by the batch, streaming and replay jobs: payloads in, `main`/`negative`/`error` out."""

from __future__ import annotations

import apache_beam as beam

from handlers.gemma import GemmaModelHandler
from pipeline.inputs import ParseChats
from pipeline.models import apology_model, triage_model
from pipeline.options import TriageOptions
from pipeline.prompts import PromptTemplate
from pipeline.tags import ERROR, MAIN, NEGATIVE
from pipeline.triage import DraftApologies, Triage


class TriageChats(beam.PTransform):
    """Raw chat payloads in; a dict of `main` (TriageRow), `negative` (ReviewMessage), `error` (DeadLetter) out."""

    def __init__(
        self,
        triage_handler: GemmaModelHandler,
        apology_handler: GemmaModelHandler,
        triage_prompt: PromptTemplate,
        apology_prompt: PromptTemplate,
        inference_timeout_secs: int | None = None,
    ):
        """`inference_timeout_secs`: a batch that takes longer (model load included) is dead-lettered."""
        super().__init__()
        self._triage = Triage(triage_handler, triage_prompt, inference_timeout_secs)
        self._apologies = DraftApologies(apology_handler, apology_prompt, inference_timeout_secs)

    @classmethod
    def from_options(cls, options: TriageOptions) -> TriageChats:
        """The graph as the flags describe it: model presets and their prompts, samplers, batching."""
        return cls.from_models(triage_model(options), apology_model(options), options.inference_timeout_secs)

    @classmethod
    def from_models(
        cls,
        triage: tuple[GemmaModelHandler, PromptTemplate],
        apology: tuple[GemmaModelHandler, PromptTemplate],
        inference_timeout_secs: int | None = None,
    ) -> TriageChats:
        """The graph on each step's handler and prompt, as `pipeline.models` makes them."""
        (triage_handler, triage_prompt), (apology_handler, apology_prompt) = triage, apology
        if triage_handler.model_tag == apology_handler.model_tag:
            # One copy of the weights for both steps, warmed for both at load: the first negative chat compiles nothing.
            triage_handler.share_model_with(apology_handler)
        return cls(triage_handler, apology_handler, triage_prompt, apology_prompt, inference_timeout_secs)

    def expand(self, payloads):
        parsed = payloads | "ParseAndValidate" >> ParseChats()
        triaged = parsed.chats | "Triage" >> self._triage
        apologies = triaged[NEGATIVE] | "DraftApologies" >> self._apologies
        errors = (parsed[ERROR], triaged[ERROR], apologies[ERROR]) | "CollectErrors" >> beam.Flatten()
        return {MAIN: triaged[MAIN], NEGATIVE: apologies[NEGATIVE], ERROR: errors}
