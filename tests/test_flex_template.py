"""Each Flex Template's metadata.json and the job's PipelineOptions agree, and gcloud accepts the metadata.

The metadata declares exactly the flags of the project's own options classes. Beam's and Dataflow's standard
options (runner, project, region, temp and staging locations, job name, streaming, sdk_container_image,
dataflow_service_options, machine type, experiments, ...) are not declared: the launcher and
`make template-run` supply them, and Dataflow accepts them without metadata.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.options import _bool
from tests.support import ROOT, TEMPLATES, declared_flags, load_metadata, parse_printed_spec, requires_gcloud

# ParameterMetadata.paramType values of the Dataflow API (v1b3); gcloud does not check them itself.
PARAM_TYPES = {
    "DEFAULT", "TEXT", "GCS_READ_BUCKET", "GCS_WRITE_BUCKET", "GCS_READ_FILE", "GCS_WRITE_FILE",
    "GCS_READ_FOLDER", "GCS_WRITE_FOLDER", "PUBSUB_TOPIC", "PUBSUB_SUBSCRIPTION", "BIGQUERY_TABLE",
    "JAVASCRIPT_UDF_FILE", "SERVICE_ACCOUNT", "MACHINE_TYPE", "KMS_KEY_NAME", "WORKER_REGION", "WORKER_ZONE",
    "BOOLEAN", "ENUM", "NUMBER", "KAFKA_READ_TOPIC", "KAFKA_WRITE_TOPIC",
}
# Parameters whose format is fixed must carry a regex, so a typo fails at launch, not hours later.
FIXED_FORMAT_TYPES = {"PUBSUB_TOPIC", "PUBSUB_SUBSCRIPTION", "BIGQUERY_TABLE", "NUMBER", "BOOLEAN"}

# Values a user may type, and values the regexes must refuse; the good ones must also parse as flags.
EXAMPLES = {
    "input_subscription": (["projects/food-chain/subscriptions/chats"], ["chats", "projects/food-chain/topics/chats"]),
    "review_topic": (["projects/food-chain/topics/review"], ["review", "projects/p/subscriptions/s"]),
    "dead_letter_topic": (["projects/food-chain/topics/dead-letters"], ["projects/p/topics/"]),
    "parked_topic": (["projects/food-chain/topics/parked"], ["parked", "projects/p/subscriptions/parked"]),
    "input": (["gs://food-chain/errors/*.jsonl"], ["errors/*.jsonl", "gs://food-chain"]),
    "output_dir": (["gs://food-chain/replay", "gs://food-chain"], ["/tmp/replay", "replay"]),
    "max_attempts": (["3"], ["0", "-1", "three"]),
    "bigquery_table": (
        ["food-chain:support.triage", "example.com:food-chain:support.triage"],
        ["support.triage", "food-chain.support.triage", "food-chain:support"],
    ),
    "model": (
        ["gs://bucket/models/gemma2_instruct_2b_en", "kaggle://keras/gemma2/keras/gemma2_instruct_2b_en"],
        ["gemma2_instruct_2b_en", "/models/gemma", "gs://bucket", "https://example.com/gemma"],
    ),
    "apology_model": (["gs://bucket/models/gemma2_instruct_9b_en"], ["/models/gemma"]),
    "max_length": (["512"], ["0", "-1", "5x", ""]),
    "max_batch_size": (["16"], ["0", "1.5"]),
    "share_model_across_processes": (["true", "false"], ["yes", "1", ""]),
    "check_below_confidence": (["0.6", "1", "0"], ["1.5", "-0.1", ".5", "60%"]),
    "check_sample_rate": (["0.05", "0.0"], ["2", "five percent"]),
    "check_imitations": (["true", "false"], ["yes", "1", ""]),
    "read_imitations_apart": (["true", "false"], ["yes", "1", ""]),
}


def _parameters(path: str) -> dict[str, dict]:
    return {parameter["name"]: parameter for parameter in load_metadata(path)["parameters"]}


@pytest.mark.parametrize(("path", "options_classes"), TEMPLATES)
def test_metadata_declares_every_option_and_nothing_else(path, options_classes):
    names = [parameter["name"] for parameter in load_metadata(path)["parameters"]]
    flags = declared_flags(options_classes)
    missing = sorted(set(flags) - set(names))
    extra = sorted(set(names) - set(flags))
    classes = ", ".join(cls.__name__ for cls in options_classes)
    assert not missing, f"{path} lacks parameters for these flags of {classes}: {', '.join(missing)}"
    assert not extra, (
        f"{path} declares parameters that no options class of the job ({classes}) defines: {', '.join(extra)} "
        "(Beam's and Dataflow's own options are passed by make template-run, not declared)"
    )
    assert len(names) == len(set(names)), f"{path} declares a parameter twice"


@pytest.mark.parametrize(("path", "options_classes"), TEMPLATES)
def test_every_parameter_is_described_and_typed(path, options_classes):
    metadata = load_metadata(path)
    assert metadata["name"] and metadata["description"]
    flags = declared_flags(options_classes)
    for name, parameter in _parameters(path).items():
        assert parameter["label"].strip() and parameter["helpText"].strip(), name
        assert parameter.get("paramType") in PARAM_TYPES, f"{name}: paramType {parameter.get('paramType')!r}"
        flag_type = flags[name].get("type")
        expected = {int: "NUMBER", _bool: "BOOLEAN"}.get(flag_type)
        if expected or parameter["paramType"] in {"NUMBER", "BOOLEAN"}:
            assert parameter["paramType"] == expected, f"{name}: flag type {flag_type} but {parameter['paramType']}"
        if parameter["paramType"] in FIXED_FORMAT_TYPES:
            assert parameter.get("regexes"), f"{name} has a fixed format but no regex"
        for regex in parameter.get("regexes", []):
            re.compile(regex)


@pytest.mark.parametrize(("path", "options_classes"), TEMPLATES)
def test_optional_parameters_are_the_flags_with_defaults(path, options_classes):
    flags = declared_flags(options_classes)
    for name, parameter in _parameters(path).items():
        default = flags[name].get("default")
        optional = parameter.get("isOptional", False)
        if default is not None:
            assert optional, f"{name} has a default ({default!r}), so it must be optional"
            # The UI shows only the help text, so it must state the default that the flag really has.
            assert f"default: {str(default).lower()}" in parameter["helpText"].lower(), name
        if not optional:
            assert default is None, name


@pytest.mark.parametrize(("path", "options_classes"), TEMPLATES)
def test_regexes_take_good_values_that_the_job_parses_and_refuse_bad_ones(path, options_classes):
    parameters = _parameters(path)
    for name, (good, bad) in EXAMPLES.items():
        if name not in parameters:
            continue
        regexes = parameters[name].get("regexes", [])
        assert regexes, name
        for value in good:
            assert all(re.fullmatch(regex, value) for regex in regexes), (name, value)
            # The launcher hands each parameter to the job as --name=value.
            assert PipelineOptions([f"--{name}={value}"]).get_all_options()[name] is not None, (name, value)
        for value in bad:
            assert not all(re.fullmatch(regex, value) for regex in regexes), (name, value)


def _gcloud_build_print_only(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """`gcloud dataflow flex-template build ... --print-only`: offline, in a configuration of its own."""
    env = {
        **os.environ,
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
        "CLOUDSDK_CORE_PROJECT": "food-chain",
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "1",
    }
    return subprocess.run(
        ["gcloud", "dataflow", "flex-template", "build", *args, "--print-only"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=180,
    )


@requires_gcloud
@pytest.mark.parametrize(("path", "options_classes"), TEMPLATES)
def test_gcloud_builds_the_template_spec_from_the_metadata(path, options_classes, tmp_path):
    image = "us-central1-docker.pkg.dev/food-chain/chat-triage/chat-triage:0.1.0"
    result = _gcloud_build_print_only(
        ["gs://food-chain-bucket/templates/t.json", f"--image={image}", "--sdk-language=PYTHON",
         f"--metadata-file={path}"],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    spec = parse_printed_spec(result.stdout)
    assert spec["image"] == image
    assert spec["sdkInfo"] == {"language": "PYTHON"}
    # gcloud keeps only name, description and parameters (it drops "streaming", for one): nothing is lost.
    assert spec["metadata"] == load_metadata(path)


@requires_gcloud
def test_gcloud_refuses_a_parameter_without_help_text(tmp_path):
    metadata = load_metadata(TEMPLATES[0][0])
    del metadata["parameters"][0]["helpText"]
    broken = tmp_path / "metadata.json"
    broken.write_text(json.dumps(metadata))
    result = _gcloud_build_print_only(
        ["gs://b/t.json", "--image=gcr.io/p/i:1", "--sdk-language=PYTHON", f"--metadata-file={broken}"], tmp_path
    )
    assert result.returncode != 0
    assert "helpText field is empty" in result.stderr
