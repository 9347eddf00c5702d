"""`make template-build` and `make template-run`: clear errors without settings, the right gcloud lines with them.

DRY_RUN=1 prints the commands without running them; the printed template build then runs for real with
--print-only, which gcloud does offline.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.support import TEMPLATES, load_metadata, parse_printed_spec, requires_gcloud

ROOT = Path(__file__).resolve().parent.parent

SETTINGS = {
    "PROJECT": "food-chain",
    "REGION": "europe-west4",
    "BUCKET": "food-chain-triage",
    "REPOSITORY": "chat-triage",
    "MODEL_PRESET": "gs://food-chain-triage/models/gemma2_instruct_2b_en",
    "INPUT_SUBSCRIPTION": "projects/food-chain/subscriptions/chats",
    "BIGQUERY_TABLE": "food-chain:support.triage",
    "REVIEW_TOPIC": "projects/food-chain/topics/review",
    "DEAD_LETTER_TOPIC": "projects/food-chain/topics/dead-letters",
}
IMAGE = "europe-west4-docker.pkg.dev/food-chain/chat-triage/chat-triage:0.1.0"
TEMPLATE_PATH = "gs://food-chain-triage/templates/chat-triage-streaming-0.1.0.json"


def _run(command: list[str], tmp_path: Path, **settings: str) -> subprocess.CompletedProcess:
    """Runs with only PATH and HOME from outside, so neither the caller's settings nor a dataflow.env leak in."""
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "DATAFLOW_ENV": str(tmp_path / "none.env"), **settings}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def _commands(stdout: str) -> list[list[str]]:
    """The commands the script printed (lines starting with '+ '), split as the shell would."""
    return [shlex.split(line[2:]) for line in stdout.splitlines() if line.startswith("+ ")]


def _flags(command: list[str]) -> dict[str, list[str]]:
    """`--name=value` arguments by name (a bare `--name` has the value ''); repeated flags keep every value."""
    flags: dict[str, list[str]] = {}
    for argument in command:
        if argument.startswith("--"):
            name, _, value = argument[2:].partition("=")
            flags.setdefault(name, []).append(value)
    return flags


@pytest.mark.parametrize(("target", "missing"), [
    ("template-build", "PROJECT REGION BUCKET REPOSITORY"),
    ("template-run", "PROJECT REGION BUCKET REPOSITORY MODEL_PRESET INPUT_SUBSCRIPTION BIGQUERY_TABLE REVIEW_TOPIC "
                     "DEAD_LETTER_TOPIC"),
])
def test_a_target_without_settings_names_every_missing_variable(target, missing, tmp_path):
    result = _run(["make", "--no-print-directory", target, "DRY_RUN=1"], tmp_path)
    assert result.returncode != 0
    assert f"error: set {missing} (in " in result.stderr
    assert f"make {target} PROJECT=..." in result.stderr
    assert "+ gcloud" not in result.stdout


def test_one_missing_variable_is_named_alone(tmp_path):
    settings = {k: v for k, v in SETTINGS.items() if k != "MODEL_PRESET"}
    result = _run(["scripts/dataflow.sh", "run"], tmp_path, DRY_RUN="1", **settings)
    assert result.returncode == 2
    assert "error: set MODEL_PRESET (in " in result.stderr


def test_a_model_preset_must_be_in_cloud_storage_or_kaggle(tmp_path):
    result = _run(
        ["scripts/dataflow.sh", "run"], tmp_path, DRY_RUN="1", **{**SETTINGS, "MODEL_PRESET": "/models/gemma"}
    )
    assert result.returncode == 2
    assert "MODEL_PRESET is a gs:// or kaggle:// KerasHub preset" in result.stderr


def test_template_run_launches_the_streaming_job_on_gpu_workers(tmp_path):
    result = _run(["make", "--no-print-directory", "template-run", "DRY_RUN=1"], tmp_path, **SETTINGS)
    assert result.returncode == 0, result.stderr
    assert "Launching job chat-triage-streaming in europe-west4" in result.stdout
    [command] = _commands(result.stdout)
    assert command[:5] == ["gcloud", "dataflow", "flex-template", "run", "chat-triage-streaming"]
    flags = _flags(command)
    assert flags["project"] == ["food-chain"] and flags["region"] == ["europe-west4"]
    assert flags["template-file-gcs-location"] == [TEMPLATE_PATH]
    assert flags["staging-location"] == ["gs://food-chain-triage/staging"]
    assert flags["temp-location"] == ["gs://food-chain-triage/tmp"]
    assert flags["worker-machine-type"] == ["g2-standard-4"]
    assert flags["enable-streaming-engine"] == [""]
    assert flags["additional-experiments"] == ["use_runner_v2"]
    assert "update" not in flags
    parameters = dict(value.partition("=")[::2] for value in flags["parameters"])
    assert parameters["sdk_container_image"] == IMAGE
    assert parameters["dataflow_service_options"] == "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"
    assert parameters["model"] == SETTINGS["MODEL_PRESET"]
    assert parameters["input_subscription"] == SETTINGS["INPUT_SUBSCRIPTION"]
    assert parameters["bigquery_table"] == SETTINGS["BIGQUERY_TABLE"]
    assert parameters["review_topic"] == SETTINGS["REVIEW_TOPIC"]
    assert parameters["dead_letter_topic"] == SETTINGS["DEAD_LETTER_TOPIC"]
    # Every parameter is a template parameter or a Beam option that Dataflow takes without metadata.
    declared = {parameter["name"] for parameter in load_metadata(TEMPLATES[0][0])["parameters"]}
    assert set(parameters) - declared == {"sdk_container_image", "dataflow_service_options", "disk_size_gb"}


def test_template_run_update_and_extra_parameters(tmp_path):
    sampler = '{"class_name": "top_k", "config": {"k": 5}}'
    result = _run(
        ["scripts/dataflow.sh", "run"], tmp_path, DRY_RUN="1", UPDATE="1", MACHINE_TYPE="g2-standard-8",
        PARAM_MAX_BATCH_SIZE="16", PARAM_SAMPLER=sampler, **SETTINGS,
    )
    assert result.returncode == 0, result.stderr
    flags = _flags(_commands(result.stdout)[0])
    assert flags["update"] == [""]
    assert flags["worker-machine-type"] == ["g2-standard-8"]
    assert "max_batch_size=16" in flags["parameters"]
    # gcloud splits --parameters at commas unless the value names another delimiter.
    assert f"^~^sampler={sampler}" in flags["parameters"]


def test_settings_come_from_the_env_file_and_the_command_line_wins(tmp_path):
    env_file = tmp_path / "dataflow.env"
    env_file.write_text(
        "# comment\n" + "".join(f"{k}={v}\n" for k, v in SETTINGS.items()) + 'IMAGE_TAG="v7"\n', encoding="utf-8"
    )
    result = subprocess.run(
        ["make", "--no-print-directory", "template-build", "DRY_RUN=1", "REGION=us-central1"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "DATAFLOW_ENV": str(env_file)},
    )
    assert result.returncode == 0, result.stderr
    submit, build = _commands(result.stdout)
    assert _flags(submit)["tag"] == ["us-central1-docker.pkg.dev/food-chain/chat-triage/chat-triage:v7"]
    assert _flags(build)["project"] == ["food-chain"]


def test_template_build_builds_the_image_then_the_spec_for_it(tmp_path):
    result = _run(["make", "--no-print-directory", "template-build", "DRY_RUN=1"], tmp_path, **SETTINGS)
    assert result.returncode == 0, result.stderr
    submit, build = _commands(result.stdout)
    assert submit[:4] == ["gcloud", "builds", "submit", "."]
    assert _flags(submit)["tag"] == [IMAGE]
    assert build[:5] == ["gcloud", "dataflow", "flex-template", "build", TEMPLATE_PATH]
    flags = _flags(build)
    assert flags["image"] == [IMAGE]
    assert flags["sdk-language"] == ["PYTHON"]
    assert flags["metadata-file"] == [TEMPLATES[0][0]]


def test_template_build_without_the_image_step(tmp_path):
    result = _run(["scripts/dataflow.sh", "build"], tmp_path, DRY_RUN="1", BUILD_IMAGE="0", **SETTINGS)
    assert result.returncode == 0, result.stderr
    assert [command[:3] for command in _commands(result.stdout)] == [["gcloud", "dataflow", "flex-template"]]


@requires_gcloud
def test_the_printed_template_build_runs_offline_with_print_only(tmp_path):
    result = _run(["scripts/dataflow.sh", "build"], tmp_path, DRY_RUN="1", BUILD_IMAGE="0", **SETTINGS)
    [build] = _commands(result.stdout)
    spec = subprocess.run(
        [*build, "--print-only"], cwd=ROOT, capture_output=True, text=True, timeout=180,
        env={**os.environ, "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"), "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"},
    )
    assert spec.returncode == 0, spec.stderr
    printed = parse_printed_spec(spec.stdout)
    assert printed["image"] == IMAGE
    assert printed["metadata"] == load_metadata(TEMPLATES[0][0])


REPLAY_SETTINGS = {
    **SETTINGS,
    "TEMPLATE": "replay",
    "DEAD_LETTER_SUBSCRIPTION": "projects/food-chain/subscriptions/dead-letters",
    "PARKED_TOPIC": "projects/food-chain/topics/parked",
}
LAUNCHER_IMAGE = "europe-west4-docker.pkg.dev/food-chain/chat-triage/chat-triage-replay:0.1.0"


def test_the_replay_template_launches_from_a_layer_over_the_image(tmp_path):
    result = _run(["make", "--no-print-directory", "template-build", "DRY_RUN=1"], tmp_path, **REPLAY_SETTINGS)
    assert result.returncode == 0, result.stderr
    image, launcher, build = _commands(result.stdout)
    assert _flags(image)["tag"] == [IMAGE]
    assert launcher[:4] == ["gcloud", "builds", "submit", "templates/replay"]
    assert _flags(launcher)["config"] == ["templates/replay/cloudbuild.yaml"]
    assert _flags(launcher)["substitutions"] == [f"_IMAGE={IMAGE},_LAUNCHER_IMAGE={LAUNCHER_IMAGE}"]
    assert build[4] == "gs://food-chain-triage/templates/chat-triage-replay-0.1.0.json"
    assert _flags(build)["image"] == [LAUNCHER_IMAGE]
    assert _flags(build)["metadata-file"] == ["templates/replay/metadata.json"]


def test_template_run_replay_launches_the_batch_job_on_the_dead_letters(tmp_path):
    result = _run(["scripts/dataflow.sh", "run"], tmp_path, DRY_RUN="1", **REPLAY_SETTINGS)
    assert result.returncode == 0, result.stderr
    [command] = _commands(result.stdout)
    assert command[:5] == ["gcloud", "dataflow", "flex-template", "run", "chat-triage-replay"]
    flags = _flags(command)
    assert flags["template-file-gcs-location"] == ["gs://food-chain-triage/templates/chat-triage-replay-0.1.0.json"]
    assert "enable-streaming-engine" not in flags and flags["max-workers"] == ["1"]
    parameters = dict(value.partition("=")[::2] for value in flags["parameters"])
    assert parameters["sdk_container_image"] == IMAGE, "workers run the project's image, not the launcher layer"
    assert parameters["input_subscription"] == REPLAY_SETTINGS["DEAD_LETTER_SUBSCRIPTION"]
    assert parameters["parked_topic"] == REPLAY_SETTINGS["PARKED_TOPIC"]
    declared = {parameter["name"] for parameter in load_metadata(TEMPLATES[1][0])["parameters"]}
    assert set(parameters) - declared == {"sdk_container_image", "dataflow_service_options", "disk_size_gb"}


def test_template_run_replay_names_its_own_settings_and_refuses_an_update(tmp_path):
    settings = {k: v for k, v in REPLAY_SETTINGS.items() if k not in {"DEAD_LETTER_SUBSCRIPTION", "PARKED_TOPIC"}}
    result = _run(["scripts/dataflow.sh", "run"], tmp_path, DRY_RUN="1", **settings)
    assert result.returncode == 2
    assert "error: set DEAD_LETTER_SUBSCRIPTION PARKED_TOPIC (in " in result.stderr
    result = _run(["scripts/dataflow.sh", "run"], tmp_path, DRY_RUN="1", UPDATE="1", **REPLAY_SETTINGS)
    assert result.returncode == 2 and "the replay is a batch job" in result.stderr


def test_template_run_replay_of_files_leaves_the_subscription_alone(tmp_path):
    settings = {k: v for k, v in REPLAY_SETTINGS.items() if k != "DEAD_LETTER_SUBSCRIPTION"}
    result = _run(["scripts/dataflow.sh", "run"], tmp_path, DRY_RUN="1", PARAM_INPUT="gs://b/retry/*.jsonl", **settings)
    assert result.returncode == 0, result.stderr
    parameters = dict(value.partition("=")[::2] for value in _flags(_commands(result.stdout)[0])["parameters"])
    assert parameters["input"] == "gs://b/retry/*.jsonl" and "input_subscription" not in parameters
