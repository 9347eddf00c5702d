"""Helpers shared by several test files: job files, the triage graph on a given handler, usage errors, templates."""

from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from handlers.gemma import GemmaModelHandler
from local.stack import LocalStack, Resources
from pipeline import replay, run
from pipeline.checks import NO_CHECKS
from pipeline.contracts import DEFAULT_VARIANT
from pipeline.graph import TriageChats
from pipeline.models import handler_prompt_args
from pipeline.prompts import load_prompt
from pipeline.variants import ApologyStep
from tests.tiny_gemma import APOLOGY_PROMPT, GENERATE_PROMPT

ROOT = Path(__file__).resolve().parent.parent


def read_lines(directory: Path, prefix: str) -> list[dict]:
    """The records of every `<prefix>*.jsonl` file in `directory` (a job's output files), in file order."""
    return [json.loads(line) for path in sorted(directory.glob(f"{prefix}*.jsonl")) for line in path.open()]


def write_lines(path: Path, lines: list[bytes | str | dict]) -> Path:
    """Writes a JSON Lines file; dicts are serialised, bytes and strings written as they are."""
    with path.open("wb") as out:
        for line in lines:
            if isinstance(line, dict):
                line = json.dumps(line, ensure_ascii=False)
            out.write((line if isinstance(line, bytes) else line.encode("utf-8")) + b"\n")
    return path


def usage_error(capsys, command: Callable[[], object]) -> str:
    """What `command` printed on stderr when it stopped with a usage error (exit code 2, as argparse stops)."""
    with pytest.raises(SystemExit) as stopped:
        command()
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("usage: "), error
    return error


def triage_graph(
    preset: str, handler_cls=GemmaModelHandler, triage_prompt=GENERATE_PROMPT, checks=NO_CHECKS, **handler_kwargs
) -> TriageChats:
    settings = {"max_length": 384, "share_across_processes": False, **handler_kwargs}
    triage, apology = load_prompt(triage_prompt), load_prompt(APOLOGY_PROMPT)
    apology_handler = handler_cls(preset, metrics_namespace="apology_model", **handler_prompt_args(apology), **settings)
    return TriageChats(
        handler_cls(preset, metrics_namespace="triage_model", **handler_prompt_args(triage), **settings),
        triage,
        [ApologyStep(DEFAULT_VARIANT, 1.0, apology_handler, apology)],
        checks=checks,
    )


class ExplodingHandler(GemmaModelHandler):
    """A handler whose model fails every batch, as an out-of-memory GPU would."""

    def load_model(self):
        return None

    def run_inference(self, batch, model, inference_args=None):
        raise RuntimeError("RESOURCE_EXHAUSTED: out of memory")


# One row per template: its metadata file and the options classes of its entry point. The replay job reuses the
# flags of the batch and streaming jobs (Beam parses all options classes at once, so a flag is declared once).
TEMPLATES = [
    ("templates/streaming/metadata.json", run.JOB.options), ("templates/replay/metadata.json", replay.JOB.options)
]


def load_metadata(path: str) -> dict:
    return json.loads((ROOT / path).read_text(encoding="utf-8"))


def parse_printed_spec(stdout: str) -> dict:
    """The container spec that --print-only prints: a YAML block scalar (`|-`) holding indented JSON."""
    body = stdout.split("\n", 1)[1] if stdout.lstrip().startswith("|") else stdout
    return json.loads(textwrap.dedent(body))


requires_gcloud = pytest.mark.skipif(
    shutil.which("gcloud") is None,
    reason="gcloud is not installed (Debian package google-cloud-cli; .ci/run installs it when it can)",
)


# Labeled chats no sentiment model should get wrong.
OBVIOUS_CHATS = [
    ("a1", "My pizza arrived cold, an hour late, and the driver was rude. Worst service ever, I want a refund.", -1),
    ("a2", "You charged me twice for the same order and nobody answers the phone. This is a disgrace.", -1),
    ("h1", "The burger was amazing and the delivery was super fast. Thank you so much!", 1),
    ("h2", "Great service today, the staff were lovely and the fries were perfect. Love this place!", 1),
    ("n1", "What time does the Main Street store open on Sundays?", 0),
    ("n2", "Can I change the delivery address on order 4521?", 0),
]


class _FlagRecorder:
    """Stands in for Beam's argument parser to read what an options class declares, flag by flag."""

    def __init__(self):
        self.flags: dict[str, dict] = {}

    def add_argument(self, flag: str, **kwargs):
        self.flags[flag.removeprefix("--")] = kwargs

    def add_argument_group(self, title: str):
        return self

    add_value_provider_argument = add_argument


def declared_flags(options_classes) -> dict[str, dict]:
    """The flags of the given options classes, each with its `add_argument` keyword arguments."""
    recorder = _FlagRecorder()
    for options_class in options_classes:
        options_class._add_argparse_args(recorder)
    return recorder.flags


def own_stack(stack: LocalStack, project: str) -> LocalStack:
    """The running stack, with resources (topics, subscriptions, dataset) of a project of the test's own."""
    own = stack.for_resources(Resources(project=project))
    own.create_resources()
    return own
