"""What every job does before its graph runs: read and check its flags (with a `--help` that lists them), pick
the model, build the graph and start it."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipeline.graph import TriageChats
from pipeline.logs import drop_known_false_alarms
from pipeline.models import use_default_model
from pipeline.options import GROUPS, TriageOptions, VariantOptions, check_triage
from pipeline.variants import apology_variants

BEAM_OPTIONS = (
    "Beam's and Dataflow's own options (--runner, --project, --region, --temp_location, ...) are accepted too; "
    "see https://cloud.google.com/dataflow/docs/reference/pipeline-options and "
    "https://beam.apache.org/releases/pydoc/current/apache_beam.options.pipeline_options.html"
)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Adds each flag's default to its help, unless it has none or the help already says what it is."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text.lower():
            return text
        return f"{text} (default: {action.default})"


class _GroupedParser(argparse.ArgumentParser):
    """An argument parser in which the options classes that add a group of the same title add to one group."""

    def __init__(self, *args, **kwargs):
        self._groups = {}
        super().__init__(*args, **kwargs)

    def add_argument_group(self, title=None, description=None, **kwargs):
        if title not in self._groups:
            self._groups[title] = super().add_argument_group(title, description, **kwargs)
        return self._groups[title]


@dataclass(frozen=True)
class Job:
    """An entry point: its command, its options classes, the flags it cannot run without, and its runner.

    `check`, given the parsed options, raises `ValueError` for a combination of flags the job cannot run with.
    """

    prog: str
    description: str
    options: tuple[type[PipelineOptions], ...]
    required: tuple[str, ...] = ()
    default_runner: str = "FnApiRunner"
    streaming: bool = False
    check: Callable[[PipelineOptions], None] | None = None

    def parser(self) -> argparse.ArgumentParser:
        """The job's own flags, grouped as `pipeline.options.GROUPS` (Beam's are only named in the epilog)."""
        parser = _GroupedParser(
            prog=self.prog, description=self.description, epilog=BEAM_OPTIONS, formatter_class=HelpFormatter
        )
        for title in GROUPS:
            parser.add_argument_group(title)
        for options_class in self.options:
            options_class._add_argparse_args(parser)
        return parser

    def parse(self, argv: list[str] | None) -> PipelineOptions:
        """The command line's options; `--help` prints the job's flags, and a missing or contradictory flag stops
        with the usage and exit code 2.

        The job's flags are not `required=True` for Beam: it parses every options class it has imported at once.
        On `default_runner` unless `--runner` names another: Beam's own default, the DirectRunner, tries to
        download the Prism binary first; `FnApiRunner` (batch) and `BundleBasedDirectRunner` (streaming) run in
        this process.
        """
        parser = self.parser()
        known, _ = parser.parse_known_args(argv)
        missing = [f"--{name}" for name in self.required if getattr(known, name) in (None, "")]
        if missing:
            parser.error(f"the following arguments are required: {', '.join(missing)}")
        options = PipelineOptions(argv, streaming=True) if self.streaming else PipelineOptions(argv)
        checks = [check_triage] if TriageOptions in self.options else []
        # A bad variants file stops the launch here, before any model loads or worker starts.
        checks += [apology_variants] if VariantOptions in self.options else []
        for check in filter(None, [*checks, self.check]):
            try:
                check(options)
            except ValueError as error:
                parser.error(str(error))
        standard = options.view_as(StandardOptions)
        standard.runner = standard.runner or self.default_runner
        return options

    def start(
        self,
        argv: list[str] | None,
        build: Callable[[beam.Pipeline, PipelineOptions, TriageChats], None],
        test_pipeline: beam.Pipeline | None = None,
    ) -> beam.runners.runner.PipelineResult:
        """Parses the flags, picks the default model if none is named, has `build` wire the triage graph into the
        pipeline (`test_pipeline` in tests) and starts it.

        `--warm_up` defaults to on for a streaming job: a stream must not stall on a compilation mid-flow, while a
        batch job meets each shape once, and soon.
        """
        options = self.parse(argv)
        triage = options.view_as(TriageOptions)
        use_default_model(triage)
        if triage.warm_up is None:
            triage.warm_up = self.streaming
        pipeline = test_pipeline or beam.Pipeline(options=options)
        build(pipeline, options, TriageChats.from_options(triage))
        return pipeline.run()


def main(start: Callable[[], object], *, wait: bool = True, level: int = logging.INFO) -> None:
    """Runs a command: logs at `level` (the jobs' progress at INFO), without Beam's known false alarms, and with
    `wait`, waits for the pipeline result `start` returns."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    drop_known_false_alarms()
    result = start()
    if wait:
        result.wait_until_finish()
