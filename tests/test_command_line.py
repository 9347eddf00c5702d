"""What a person sees at the command line: each job's `--help` lists its flags, and start-up noise stays out."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from benchmarks import injection
from handlers import native_logs
from pipeline import batch, replay, run
from pipeline.logs import drop_known_false_alarms
from tests.support import ROOT, declared_flags
from training import evaluate

JOBS = [run.JOB, batch.JOB, replay.JOB, evaluate.JOB, injection.JOB]


@pytest.mark.parametrize("job", JOBS, ids=lambda job: job.prog)
def test_help_lists_every_flag_of_the_job_in_its_group_with_its_help(job):
    text = job.parser().format_help()
    for flag, settings in declared_flags(job.options).items():
        assert f"--{flag}" in text
        # argparse wraps help texts; their first words are enough to find them.
        assert " ".join(settings["help"].split()[:3]) in " ".join(text.split())
    assert "input and output:" in text and "model:" in text and "batching:" in text and "reliability:" in text
    assert "https://cloud.google.com/dataflow/docs/reference/pipeline-options" in " ".join(text.split())


def test_help_of_the_streaming_job_from_the_command_line():
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.run", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0
    assert done.stdout.startswith("usage: python -m pipeline.run")
    assert "--input_subscription" in done.stdout and "(default: 512)" in " ".join(done.stdout.split())
    assert done.stderr == ""


def test_a_missing_flag_is_named_with_the_usage_and_exit_code_2():
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.batch", "--output_dir", "out"], cwd=ROOT, capture_output=True, text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("usage: python -m pipeline.batch")
    assert "error: the following arguments are required: --input" in done.stderr


def test_tensorflow_starts_without_its_start_up_lines_on_stderr():
    code = "from handlers import native_logs; native_logs.keras_hub(); print('ready')"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout == "ready\n"
    assert done.stderr == ""


def test_native_stderr_is_filtered_but_a_real_error_still_shows(capfd):
    with native_logs.filtered():
        os.write(2, b"I0000 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.\n")
        os.write(2, b"F0000 something.cc:1] Check failed: the model file is corrupt\n")
    err = capfd.readouterr().err
    assert "cuda drivers" not in err
    assert "Check failed: the model file is corrupt" in err


def test_a_known_false_alarm_is_dropped_and_other_warnings_kept(caplog):
    drop_known_false_alarms()
    drop_known_false_alarms()  # twice: one filter
    with caplog.at_level(logging.WARNING):
        logging.warning("Resource module is not available for current platform, memory usage cannot be fetched.")
        logging.warning("inference failed for a batch of 4 chats")
    assert [record.getMessage() for record in caplog.records] == ["inference failed for a batch of 4 chats"]
