"""Apology variants: the file that names them, each negative chat's variant (stable by chat id), and the step that
drafts each variant's apologies with its own model handler and prompt."""

from __future__ import annotations

import bisect
import itertools
import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from pydantic import BaseModel, ConfigDict, Field, StrictStr, StringConstraints, ValidationError, model_validator

from handlers.gemma import GemmaModelHandler
from pipeline.contracts import DEFAULT_VARIANT, describe_validation_error
from pipeline.options import TriageOptions, VariantOptions
from pipeline.prompts import PromptTemplate, load_prompt
from pipeline.shares import stable_share
from pipeline.tags import ERROR, NEGATIVE
from pipeline.triage import DraftApologies

# Where relative presets in a variants file are found: the checkout the pipeline runs from (models/ lives there).
REPOSITORY = Path(__file__).resolve().parents[1]
# The word a variants file uses for the job's own apology model (--apology_model, else --model).
JOB_MODEL = "default"


class Variant(BaseModel):
    """One variant of the apology step, as a `[[variant]]` table of the variants file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[StrictStr, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")] = Field(
        description="written into every review message and decision row; lowercase letters, digits, - and _"
    )
    share: float = Field(gt=0, le=1, description="the share of negative chats it drafts for")
    preset: Annotated[StrictStr, StringConstraints(min_length=1)] = Field(
        description="`default` (the job's apology model), a folder (relative to the repository root, or absolute), "
        "gs://… or kaggle://…"
    )
    prompt: StrictStr | None = Field(
        None, description="a prompt file under prompts/ (or --prompts_dir), e.g. task/apology; default: the "
        "apology prompt of the preset's family"
    )
    sampler: StrictStr | dict | None = Field(None, description="a KerasHub sampler; default: --apology_sampler")
    max_length: int | None = Field(None, gt=0, description="tokens, prompt plus draft; default: --apology_max_length")

    def folder(self) -> Path | None:
        """The local folder the preset names (a relative one under the repository root); none for `default` or a
        remote preset."""
        if self.preset == JOB_MODEL or "://" in self.preset:
            return None
        return REPOSITORY / self.preset  # an absolute path stays as it is

    def preset_for(self, job_model: str) -> str:
        """The preset to load: `job_model` for `default`."""
        if self.preset == JOB_MODEL:
            return job_model
        folder = self.folder()
        return self.preset if folder is None else str(folder)


class VariantsFile(BaseModel):
    """A variants file: its `[[variant]]` tables, whose shares add up to 1."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    variant: list[Variant] = Field(min_length=1)

    @model_validator(mode="after")
    def _names_unique_and_shares_whole(self) -> VariantsFile:
        names = [variant.name for variant in self.variant]
        if len(set(names)) < len(names):
            raise ValueError(f"variant names must differ: {names}")
        total = math.fsum(variant.share for variant in self.variant)
        if not math.isclose(total, 1.0, abs_tol=1e-9):
            raise ValueError(f"the shares must add up to 1, not {total:g}")
        return self


# Without a variants file: one variant, the job's apology model with the apology flags' prompt, sampler and length.
FLAGS_VARIANT = Variant(name=DEFAULT_VARIANT, share=1.0, preset=JOB_MODEL)


def apology_variants(options: PipelineOptions) -> tuple[Variant, ...]:
    """The variants of --apology_variants, or `FLAGS_VARIANT` alone.

    Raises:
        ValueError: the file is not a valid variants file (see `read_variants`).
    """
    path = options.view_as(VariantOptions).apology_variants
    return read_variants(path, options.view_as(TriageOptions).prompts_dir) if path else (FLAGS_VARIANT,)


def read_variants(path: str, prompts_dir: str | None = None) -> tuple[Variant, ...]:
    """The variants of the file at `path` (local or gs://), each checked: its prompt exists, and a preset folder
    it names exists.

    Raises:
        ValueError: the file cannot be read or is not a valid variants file; the message names the problem.
    """
    try:
        with FileSystems.open(path) as file:
            spec = VariantsFile.model_validate(tomllib.loads(file.read().decode("utf-8")))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"--apology_variants {path}: cannot read it: {error}") from error
    except ValidationError as error:
        raise ValueError(f"--apology_variants {path}: {describe_validation_error(error)}") from error
    for variant in spec.variant:
        if variant.prompt is not None:
            try:
                load_prompt(variant.prompt, prompts_dir)
            except FileNotFoundError:
                raise ValueError(
                    f"--apology_variants {path}: variant {variant.name!r} names prompt {variant.prompt!r}, which is "
                    "not a prompt file"
                ) from None
        folder = variant.folder()
        if folder is not None and not folder.is_dir():
            raise ValueError(
                f"--apology_variants {path}: variant {variant.name!r} names preset {variant.preset!r}, but there is no "
                f"folder {folder}"
            )
    return tuple(spec.variant)


def variant_index(chat_id: str, shares: Sequence[float]) -> int:
    """Which of the variants (by their `shares`) drafts for `chat_id`: the same one in every process and run
    (`stable_share`): a redelivered or replayed chat lands on the same worker or another, and must keep its variant
    either way.
    """
    point = stable_share(chat_id)
    bounds = list(itertools.accumulate(shares))
    # Shares that add up to a hair under 1 must not leave the last few points without a variant.
    return min(bisect.bisect_right(bounds, point), len(shares) - 1)


@dataclass(frozen=True)
class ApologyStep:
    """A variant as the graph runs it: its name and share, its model handler and its prompt."""

    name: str
    share: float
    handler: GemmaModelHandler
    prompt: PromptTemplate


def draft_apologies(steps: Sequence[ApologyStep], timeout_secs: int | None = None) -> beam.PTransform:
    """The apology step of the graph: `DraftVariants` for several variants, the variant's own step for one."""
    if len(steps) > 1:
        return DraftVariants(steps, timeout_secs)
    # One variant keeps the graph of the jobs before variants (no Partition, the same step names), so a job running
    # it can still be updated in place on Dataflow.
    [step] = steps
    return DraftApologies(step.handler, step.prompt, timeout_secs, variant=step.name)


class DraftVariants(beam.PTransform):
    """Negative chats in, each to its variant's own apology step; `negative` and `error` of all variants out.

    One RunInference step per variant (not one keyed handler with Beam's `KeyModelMapping`): docs/models-and-prompts.md
    says why.
    """

    def __init__(self, steps: Sequence[ApologyStep], timeout_secs: int | None = None):
        super().__init__()
        self._shares = [step.share for step in steps]
        self._drafts = {
            step.name: DraftApologies(step.handler, step.prompt, timeout_secs, variant=step.name) for step in steps
        }

    def expand(self, negatives):
        shares = self._shares
        parts = negatives | "AssignVariants" >> beam.Partition(
            lambda negative, count: variant_index(negative.chat.chat_id, shares), len(shares)
        )
        outputs = [part | name >> drafts for part, (name, drafts) in zip(parts, self._drafts.items())]
        return {
            tag: tuple(output[tag] for output in outputs) | f"All_{tag}" >> beam.Flatten() for tag in (NEGATIVE, ERROR)
        }
