"""Prompt templates: which file fits which model, loading it from `prompts/`, and filling it in safely."""

from __future__ import annotations

import dataclasses
import enum
import html
import re
import string
import tomllib
from importlib import resources
from pathlib import Path, PurePath

from handlers import lora


class Family(enum.StrEnum):
    """How a model was trained decides how it must be asked."""

    BASE = "base"  # pretrained only: continues text, so it gets few-shot completion prompts
    INSTRUCT = "instruct"  # instruction-tuned: follows chat turns
    TUNED = "tuned"  # a base model with a sentiment LoRA from `training.tune`: short scoring prompt, base prompts else
    TASK = "task"  # a base model with a LoRA of `training.tune --family task`: label, summary and reply, no examples


class SentimentMode(enum.StrEnum):
    """How the triage model gives its sentiment."""

    SCORE = "score"  # the model's likelihood picks one of the labels; it then writes only the summary
    GENERATE = "generate"  # the model writes the whole JSON reply


# The languages `--summary_language` can ask for (the customers'), by ISO 639-1 code, as prompts name them.
SUMMARY_LANGUAGES = {"en": "English", "ko": "Korean"}

# Preset names of instruction-tuned Gemma: `gemma2_instruct_2b_en`, `gemma-2-2b-it`, `gemma3_instruct_1b`.
_INSTRUCT_NAME = re.compile(r"instruct|(^|[_-])it($|[_-])", re.IGNORECASE)


# The prompts a tuned family's presets were trained on; for their other tasks they are still the base model.
_TRAINED_PROMPTS = {Family.TUNED: frozenset({"triage_score"}), Family.TASK: frozenset({"triage_score", "apology"})}


def detect_family(preset: str) -> Family:
    """The family a preset belongs to: the one its LoRA manifest declares, else from its name (KerasHub and
    Kaggle name every instruct preset so).

    The name is the last part of the path that is not a version number, as Kaggle handles end in one.
    """
    if lora.is_lora_preset(preset):
        return Family(lora.read_manifest(preset)["prompt"]["family"])
    name = [part for part in PurePath(preset).parts if not part.isdigit()][-1]
    return Family.INSTRUCT if _INSTRUCT_NAME.search(name) else Family.BASE


@dataclasses.dataclass(frozen=True)
class LabelScoring:
    """How a scoring prompt is read: the label continuations it ends with, and what follows the chosen one.

    Args:
        labels: each continuation of the prompt (`" negative"`) and the sentiment it stands for.
        then: appended after the chosen label, for the model to continue with the summary.
        content_free: inputs with no sentiment (`"N/A"`); the labels' scores on them are subtracted from every
            chat's scores, which removes the model's prior for each label word (contextual calibration).
        continue_head: the model continues after the chosen label with this text in place of the template's head
            (its text before the chat): a tuned model's short scoring prompt then gets the base prompt's
            few-shot examples for the summary (TOML: `continue_with = "<prompt name>"`, whose head this is).
        then_in_language: `then` for a summary in one language set by the operator, with `$language` for its
            name ("\nSummary in $language:"); without it, the summary is in the chat's language.
    """

    labels: dict[str, int]
    then: str
    content_free: tuple[str, ...] = ()
    continue_head: str | None = None
    then_in_language: str | None = None


@dataclasses.dataclass(frozen=True)
class PromptTemplate:
    """A versioned prompt; `$name` placeholders are filled with escaped text.

    `stop` holds the texts that end the model's reply; `scoring` is set for scoring prompts only. With
    `chat_line_prefix`, every line of `$chat` starts with it, so no line of a chat can pass for one of the template's.
    """

    name: str
    version: str
    template: str
    stop: tuple[str, ...] = ()
    scoring: LabelScoring | None = None
    chat_line_prefix: str = ""

    def render(self, **values: object) -> str:
        """Fills the template; every value is escaped so it cannot close the `<chat>` tags around it."""
        escaped = {key: html.escape(str(value), quote=False) for key, value in values.items()}
        if self.chat_line_prefix and "chat" in escaped:
            escaped["chat"] = "\n".join(self.chat_line_prefix + line for line in escaped["chat"].split("\n"))
        return string.Template(self.template).substitute(escaped)

    def head(self) -> str:
        """The template's text before its first placeholder (the chat, in most), as rendered: what every prompt
        of it starts with."""
        marker = "\x00"
        names = string.Template(self.template).get_identifiers()
        return self.render(**dict.fromkeys(names, marker)).split(marker, 1)[0]

    def with_summary_language(self, code: str) -> PromptTemplate:
        """This scoring prompt, asking for the summary in the language of ISO 639-1 `code` (`SUMMARY_LANGUAGES`);
        its version says so (`…+summary-en`), as every output row carries it."""
        if not (self.scoring and self.scoring.then_in_language):
            raise ValueError(f"prompt {self.name!r} cannot set the summary's language (no then_in_language)")
        then = string.Template(self.scoring.then_in_language).substitute(language=SUMMARY_LANGUAGES[code])
        return dataclasses.replace(
            self, version=f"{self.version}+summary-{code}", scoring=dataclasses.replace(self.scoring, then=then)
        )

    def content_free_prompts(self) -> list[str]:
        """The scoring prompt filled with each content-free input (a scoring template takes only `$chat`)."""
        return [self.render(chat=text) for text in self.scoring.content_free] if self.scoring else []


def prompt_name(task: str, family: Family, mode: SentimentMode | None = None) -> str:
    """The file a task's prompt lives in: `base/triage_score`, `instruct/apology`, …"""
    file = f"{task}_{mode.value}" if mode else task
    if family in _TRAINED_PROMPTS and file not in _TRAINED_PROMPTS[family]:
        family = Family.BASE
    return f"{family.value}/{file}"


def load_prompt(name: str, directory: str | Path | None = None) -> PromptTemplate:
    """Loads `prompts/<name>.toml` (or `<directory>/<name>.toml`); `name` may name a subfolder.

    A scoring prompt that continues with another prompt's head gets a version naming both (`a-v2+b-v1`), so an
    output row says which texts wrote its summary.
    """
    if directory is None:
        source = resources.files("prompts").joinpath(f"{name}.toml").read_text(encoding="utf-8")
    else:
        source = Path(directory, f"{name}.toml").read_text(encoding="utf-8")
    spec = tomllib.loads(source)
    missing = {"version", "template"} - spec.keys()
    if missing:
        raise ValueError(f"prompt {name!r} lacks {sorted(missing)}")
    scoring, version, continue_head = spec.get("scoring"), spec["version"], None
    if scoring and "continue_with" in scoring:
        continued = load_prompt(scoring["continue_with"], directory)
        version, continue_head = f"{version}+{continued.version}", continued.head()
    return PromptTemplate(
        name=name,
        version=version,
        template=spec["template"],
        stop=tuple(spec.get("stop", ())),
        chat_line_prefix=spec.get("chat_line_prefix", ""),
        scoring=LabelScoring(
            labels=dict(scoring["labels"]), then=scoring["then"], content_free=tuple(scoring.get("content_free", ())),
            continue_head=continue_head, then_in_language=scoring.get("then_in_language"),
        ) if scoring else None,
    )
