"""The triage graph shared by the batch, streaming and replay jobs: payloads in, `main`/`negative`/`error` out."""

from __future__ import annotations

import apache_beam as beam

from handlers.gemma import GemmaModelHandler
from pipeline.dead_letters import ERROR
from pipeline.inputs import ParseChats
from pipeline.options import TriageOptions
from pipeline.prompts import PromptTemplate, load_prompt
from pipeline.triage import MAIN, NEGATIVE, DraftApologies, Triage


class TriageChats(beam.PTransform):
    """Raw chat payloads in; a dict of `main` (TriageRow), `negative` (ReviewMessage), `error` (DeadLetter) out."""

    def __init__(
        self,
        triage_handler: GemmaModelHandler,
        apology_handler: GemmaModelHandler,
        triage_prompt: PromptTemplate,
        apology_prompt: PromptTemplate,
    ):
        super().__init__()
        self._triage = Triage(triage_handler, triage_prompt)
        self._apologies = DraftApologies(apology_handler, apology_prompt)

    @classmethod
    def from_options(cls, options: TriageOptions) -> TriageChats:
        """The graph as the flags describe it: model presets, samplers, batching and prompts."""
        shared = {
            "max_batch_size": options.max_batch_size,
            "max_batch_duration_secs": options.max_batch_duration_secs,
            "share_across_processes": options.share_model_across_processes,
        }
        triage = GemmaModelHandler(
            options.model, model_id=options.model_id, max_length=options.max_length, sampler=options.sampler,
            metrics_namespace="triage_model", **shared,
        )
        apology = GemmaModelHandler(
            options.apology_model or options.model, model_id=None if options.apology_model else options.model_id,
            max_length=options.apology_max_length, sampler=options.apology_sampler,
            metrics_namespace="apology_model", **shared,
        )
        return cls(
            triage, apology, load_prompt("triage", options.prompts_dir), load_prompt("apology", options.prompts_dir)
        )

    def expand(self, payloads):
        parsed = payloads | "ParseAndValidate" >> ParseChats()
        triaged = parsed.chats | "Triage" >> self._triage
        apologies = triaged[NEGATIVE] | "DraftApologies" >> self._apologies
        errors = (parsed[ERROR], triaged[ERROR], apologies[ERROR]) | "CollectErrors" >> beam.Flatten()
        return {MAIN: triaged[MAIN], NEGATIVE: apologies[NEGATIVE], ERROR: errors}
