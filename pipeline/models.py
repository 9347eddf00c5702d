"""Which models the jobs run: the local default, and each step's model handler with the prompt that fits it."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from handlers import lora
from handlers.choice import Choice
from handlers.gemma import GemmaModelHandler
from pipeline.options import TriageOptions
from pipeline.prompts import Family, PromptTemplate, SentimentMode, detect_family, load_prompt, prompt_name
from pipeline.variants import FLAGS_VARIANT, REPOSITORY, ApologyStep, Variant

# The shipped LoRAs of the local Gemma 3 270M, one per step (docs/evaluation-and-tuning.md says why): part of a
# checkout, not of a wheel. The triage step runs the whole-task LoRA; the apology adapter was trained on from it.
SHIPPED = REPOSITORY / "models"
SHIPPED_TRIAGE_LORA = SHIPPED / "gemma3-270m-task-lora"
SHIPPED_APOLOGY_LORA = SHIPPED / "gemma3-270m-apology-lora"


def default_model(lora_preset: Path = SHIPPED_TRIAGE_LORA) -> str:
    """The local default of a step: its shipped LoRA on the Gemma 3 270M, whose base is built once into the XDG
    cache (`make model`) and reused; the bare 270M where the LoRA is absent (an installed wheel).

    The converter's packages come with the `local-model` extra; production images name a preset instead.
    """
    from handlers import gguf_preset

    base = str(gguf_preset.build_preset())
    if lora_preset.is_dir():
        return str(lora_preset)
    logging.warning("no shipped LoRA at %s: the default model is the untuned Gemma 3 270M", lora_preset)
    return base


def use_default_model(options: TriageOptions) -> None:
    """Without `--model`, the shipped triage LoRA, and the shipped apology LoRA unless `--apology_model` names
    another (with `--model`, apologies come from that model unless `--apology_model` says otherwise)."""
    if not options.model:
        options.model = default_model()
        options.apology_model = options.apology_model or default_model(SHIPPED_APOLOGY_LORA)


# Where each model handler's metrics go, so the two report apart.
TRIAGE_NAMESPACE = "triage_model"
APOLOGY_NAMESPACE = "apology_model"
# The longest reply each task needs, in tokens: each batch runs at the shortest length bucket that holds its longest
# prompt plus this (capped by --max_length / --apology_max_length), since prefill covers the whole length.
# A summary is at most 512 characters (JSON around it included, about 128 tokens); a draft apology is one reply line.
TRIAGE_REPLY_TOKENS = 128
APOLOGY_REPLY_TOKENS = 192
# The shortest chat (a valid chat is never empty), user id and summary: the warm-up's prompt is the template around
# them, so it is the shortest prompt the handler can be sent and every length bucket a stream reaches is above it.
_SHORTEST_FIELDS = {"chat": "ok", "user_id": "1", "summary": "ok"}


def triage_model(options: TriageOptions, *, choose_only: bool = False) -> tuple[GemmaModelHandler, PromptTemplate]:
    """The triage model's handler and the prompt that fits its family and the sentiment mode.

    `choose_only` makes a score-mode handler stop after picking the label (no summary), for measuring.
    """
    mode = SentimentMode(options.sentiment_mode)
    prompt = load_prompt(prompt_name("triage", _family(options, options.model), mode), options.prompts_dir)
    if options.summary_language != "auto":
        prompt = prompt.with_summary_language(options.summary_language)
    prompt_args = handler_prompt_args(prompt, lora.label_offsets(options.model, prompt.name))
    handler = GemmaModelHandler(
        options.model, model_id=options.model_id, max_length=options.max_length, sampler=options.sampler,
        metrics_namespace=TRIAGE_NAMESPACE, reply_tokens=TRIAGE_REPLY_TOKENS, **prompt_args,
        **_batching(options), choose_only=choose_only, warm_up_prompt=_warm_up_prompt(options, prompt),
    )
    return handler, prompt


def apology_model(
    options: TriageOptions, variant: Variant = FLAGS_VARIANT
) -> tuple[GemmaModelHandler, PromptTemplate]:
    """A variant's apology handler and prompt. Whatever the variant leaves out comes from the flags: the preset
    (--apology_model, else the triage preset), its family's prompt, the sampler and max_length."""
    preset = variant.preset_for(options.apology_model or options.model)
    prompt = load_prompt(variant.prompt or prompt_name("apology", _family(options, preset)), options.prompts_dir)
    # Each variant's handler reports its metrics apart; the flags' variant where the jobs always have.
    namespace = APOLOGY_NAMESPACE if variant == FLAGS_VARIANT else f"{APOLOGY_NAMESPACE}_{variant.name}"
    handler = GemmaModelHandler(
        preset, model_id=options.model_id if preset == options.model else None,
        max_length=variant.max_length or options.apology_max_length, sampler=variant.sampler or options.apology_sampler,
        metrics_namespace=namespace, reply_tokens=APOLOGY_REPLY_TOKENS, **handler_prompt_args(prompt),
        **_batching(options), warm_up_prompt=_warm_up_prompt(options, prompt),
    )
    return handler, prompt


def apology_steps(options: TriageOptions, variants: Sequence[Variant] = (FLAGS_VARIANT,)) -> list[ApologyStep]:
    """One apology step per variant (`pipeline.variants.apology_variants`)."""
    return [ApologyStep(variant.name, variant.share, *apology_model(options, variant)) for variant in variants]


def _batching(options: TriageOptions) -> dict:
    # min = max: Beam's BatchElements otherwise starts at 1 and sizes batches by timing regression, which the
    # first compilations throw off; full batches are faster, and a bundle's last batch is still flushed as it is.
    return {
        "min_batch_size": options.max_batch_size,
        "max_batch_size": options.max_batch_size,
        "max_batch_duration_secs": options.max_batch_duration_secs,
        "share_across_processes": options.share_model_across_processes,
        "prefix_cache": options.prefix_cache,
    }


def _warm_up_prompt(options: TriageOptions, prompt: PromptTemplate) -> str | None:
    """With `--warm_up`, the shortest prompt of this template, from which the handler's warm-up finds its shapes."""
    # A template ignores the fields it has no placeholder for.
    return prompt.render(**_SHORTEST_FIELDS) if options.warm_up else None


def _family(options: TriageOptions, preset: str) -> Family:
    return detect_family(preset) if options.model_family == "auto" else Family(options.model_family)


def handler_prompt_args(prompt: PromptTemplate, label_offsets: Mapping[str, float] | None = None) -> dict:
    """What a model handler must know of its prompt: where replies stop, to score, which labels to choose (with a
    tuned preset's `label_offsets`, if it has any), and the heads its prompts start with (the continued prompt's
    too), for the model's prefix cache."""
    scoring = prompt.scoring
    # The most negative label first: where a chat is read several ways, the most cautious reading wins.
    labels = tuple(sorted(scoring.labels, key=scoring.labels.get)) if scoring else ()
    choice = Choice(
        labels, scoring.then, tuple(prompt.content_free_prompts()),
        continue_head=(prompt.head(), scoring.continue_head) if scoring.continue_head is not None else None,
        offsets=tuple(label_offsets.get(label, 0.0) for label in labels) if label_offsets else (),
    ) if scoring else None
    heads = (prompt.head(), *([scoring.continue_head] if scoring and scoring.continue_head is not None else []))
    return {"stop": prompt.stop, "choice": choice, "heads": heads}
