"""Prompt templates: loading them from `prompts/` and filling them in safely."""

from __future__ import annotations

import html
import string
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path


@dataclass(frozen=True)
class PromptTemplate:
    """A versioned prompt; `$name` placeholders are filled with escaped text."""

    name: str
    version: str
    template: str

    def render(self, **values: object) -> str:
        """Fills the template; every value is escaped so it cannot close the `<chat>` tags around it."""
        escaped = {key: html.escape(str(value), quote=False) for key, value in values.items()}
        return string.Template(self.template).substitute(escaped)


def load_prompt(name: str, directory: str | Path | None = None) -> PromptTemplate:
    """Loads `prompts/<name>.toml` (or `<directory>/<name>.toml`)."""
    if directory is None:
        source = resources.files("prompts").joinpath(f"{name}.toml").read_text(encoding="utf-8")
    else:
        source = Path(directory, f"{name}.toml").read_text(encoding="utf-8")
    spec = tomllib.loads(source)
    missing = {"version", "template"} - spec.keys()
    if missing:
        raise ValueError(f"prompt {name!r} lacks {sorted(missing)}")
    return PromptTemplate(name=name, version=spec["version"], template=spec["template"])
