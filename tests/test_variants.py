"""Apology variants: each negative chat's variant by its id (close to the shares, the same in every process and on
replay), bad variants files stopped at launch, and two variants on the tiny Gemma through the batch and replay
jobs into the desk's stats."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from fastapi.testclient import TestClient

from handlers import lora
from pipeline import batch, replay, run
from pipeline.contracts import DeadLetter, Stage
from pipeline.graph import TriageChats
from pipeline.models import apology_steps, triage_model
from pipeline.options import StreamingOptions, TriageOptions
from pipeline.variants import apology_variants, read_variants, variant_index
from review.app import create_app
from tests.review_support import Clock, add_drafts, desk_on
from tests.support import OBVIOUS_CHATS, ROOT, read_lines, usage_error, write_lines
from tests.tiny_gemma import APOLOGY_LESSON, TRIAGE_LESSONS

SHIPPED = ROOT / "variants" / "apology.toml"
IDS = [f"chat-{n}" for n in range(1000)]
TINY_FLAGS = [
    "--max_length=384", "--apology_max_length=384", "--model_family=instruct", "--sentiment_mode=generate",
    "--share_model_across_processes=false",
]
# The tiny Gemma's negative chat, under ids of its own: each is drafted by the variant its id falls to.
NEGATIVE_IDS = [f"n{n}" for n in range(8)]
SHARES = (0.5, 0.5)


def _variants_file(path, preset: str) -> str:
    """Two variants of the tiny Gemma: `a` the job's own model with the flags' prompt and length, `b` the same
    preset named by its folder, with its prompt and length named."""
    path.write_text(f"""
[[variant]]
name = "a"
share = {SHARES[0]}
preset = "default"

[[variant]]
name = "b"
share = {SHARES[1]}
preset = "{preset}"
prompt = "instruct/apology"
max_length = 384
""")
    return str(path)


def _expected_variants() -> dict[str, str]:
    expected = {chat_id: "ab"[variant_index(chat_id, SHARES)] for chat_id in NEGATIVE_IDS}
    assert set(expected.values()) == {"a", "b"}, "the ids must reach both variants"
    return expected


def _negative_chats() -> list[dict]:
    _, user_id, chat, _ = TRIAGE_LESSONS[0]
    return [{"id": chat_id, "user_id": user_id, "chat_message": chat} for chat_id in NEGATIVE_IDS]


def test_a_thousand_ids_split_close_to_the_shares():
    shares = (0.7, 0.2, 0.1)
    counts = Counter(variant_index(chat_id, shares) for chat_id in IDS)
    for index, share in enumerate(shares):
        # Within four standard deviations of a binomial count: a real hash misses that once in 15,000 files.
        spread = 4 * (len(IDS) * share * (1 - share)) ** 0.5
        assert abs(counts[index] - len(IDS) * share) < spread, counts


def test_an_id_keeps_its_variant_in_every_process():
    code = "import sys; from pipeline.variants import variant_index; print([variant_index(i, (0.5, 0.3, 0.2)) " \
        "for i in sys.stdin.read().split()])"
    here = [variant_index(chat_id, (0.5, 0.3, 0.2)) for chat_id in IDS]
    for seed in ("1", "2"):
        # Python's own hash() of a string differs between processes with different seeds; the assignment must not.
        done = subprocess.run(
            [sys.executable, "-c", code], input="\n".join(IDS), cwd=ROOT, capture_output=True, text=True,
            env={**os.environ, "PYTHONHASHSEED": seed}, timeout=120, check=True,
        )
        assert json.loads(done.stdout) == here


def test_the_shipped_file_compares_the_apology_lora_with_the_whole_task_lora():
    apology, task = read_variants(str(SHIPPED))
    assert (apology.name, apology.share, task.name, task.share) == ("apology-lora", 0.5, "task-lora", 0.5)
    # Each drafts with the prompt it was trained on.
    for variant in (apology, task):
        assert lora.read_manifest(variant.folder())["apology_prompt"]["name"] == variant.prompt


def test_with_variants_the_review_topic_gets_the_drafts_of_every_variant():
    flags = [
        "--input_subscription=projects/food-chain/subscriptions/chats", "--bigquery_table=food-chain:support.triage",
        "--review_topic=projects/food-chain/topics/review", "--dead_letter_topic=projects/food-chain/topics/dead",
        "--model=/models/gemma", f"--apology_variants={SHIPPED}",
    ]
    options = PipelineOptions(flags, streaming=True)
    pipeline = beam.Pipeline(runner="BundleBasedDirectRunner", options=options)
    triage = TriageChats.from_options(options.view_as(TriageOptions))
    run.build_pipeline(pipeline, options.view_as(StreamingOptions), triage)

    transforms = {t.unique_name: t for t in pipeline.to_runner_api().components.transforms.values()}
    assert {"TriageChats/DraftApologies/apology-lora/Gemma/RunInference",
            "TriageChats/DraftApologies/task-lora/Gemma/RunInference"} <= set(transforms)
    # The review topic takes the drafts of every variant, and the sentiment checks, through one Flatten.
    [review_input] = transforms["PublishForReview"].inputs.values()
    assert review_input in transforms["ForReview"].outputs.values()
    drafts = transforms["TriageChats/DraftApologies/All_negative"].outputs.values()
    assert set(drafts) <= set(transforms["ForReview"].inputs.values())


@pytest.mark.parametrize(("file_text", "expected"), [
    ('[[variant]]\nname = "a"\nshare = 0.5\npreset = "default"\n'
     '[[variant]]\nname = "b"\nshare = 0.4\npreset = "default"\n', "the shares must add up to 1, not 0.9"),
    ('[[variant]]\nname = "a"\nshare = 1.0\npreset = "default"\nprompt = "task/apolgy"\n',
     "variant 'a' names prompt 'task/apolgy', which is not a prompt file"),
    ('[[variant]]\nname = "a"\nshare = 1.0\npreset = "models/no-such-lora"\n',
     "variant 'a' names preset 'models/no-such-lora', but there is no folder"),
    ('[[variant]]\nname = "a"\nshare = 0.5\npreset = "default"\n'
     '[[variant]]\nname = "a"\nshare = 0.5\npreset = "default"\n', "variant names must differ"),
    ('[[variant]]\nname = "a"\nshare = 1.0\npreset = "default"\nmax_lenght = 512\n',
     "variant.0.max_lenght: Extra inputs are not permitted"),
    ('[[variant]\nname = "a"\n', "cannot read it"),
])
def test_a_bad_variants_file_is_a_usage_error_at_launch(tmp_path, capsys, file_text, expected):
    path = tmp_path / "variants.toml"
    path.write_text(file_text)
    argv = ["--input", "chats.jsonl", "--output_dir", str(tmp_path), "--model", "x", "--apology_variants", str(path)]
    error = usage_error(capsys, lambda: batch.run(argv))
    assert f"--apology_variants {path}: " in error and expected in error, error


def test_two_variants_on_the_tiny_gemma_draft_their_chats_for_the_desk(tiny_gemma, tmp_path):
    # A preset path of its own: Beam shares a model across processes by its tag, which follows the preset.
    preset = str(shutil.copytree(tiny_gemma, tmp_path / "tiny_gemma"))
    variants = _variants_file(tmp_path / "variants.toml", preset)
    source = write_lines(tmp_path / "chats.jsonl", _negative_chats())
    out = tmp_path / "out"
    argv = ["--input", str(source), "--output_dir", str(out), "--model", preset, "--apology_variants", variants,
            *TINY_FLAGS, "--share_model_across_processes=true"]
    result = batch.JOB.start(
        argv, lambda pipeline, _options, triage: batch.build_pipeline(pipeline, str(source), str(out), triage)
    )
    result.wait_until_finish()

    expected = _expected_variants()
    drafts = read_lines(out, "negative")
    assert {m["chat_id"]: m["variant"] for m in drafts} == expected
    assert {m["draft_reply"] for m in drafts} == {APOLOGY_LESSON[3]}
    metrics = result.metrics()
    for name, count in Counter(expected.values()).items():
        [prompts] = metrics.query(MetricsFilter().with_namespace(f"apology_model_{name}").with_name("prompts"))[
            "counters"
        ]
        assert prompts.committed == count, f"variant {name} drafts in its own step"
    loads = metrics.query(MetricsFilter().with_name("load_model_latency_milli_secs"))["distributions"]
    assert sum(d.committed.count for d in loads) == 1, "triage and both variants share one copy of the preset"

    desk = desk_on(f"sqlite:///{tmp_path / 'desk.sqlite3'}", Clock())
    add_drafts(desk, *[json.dumps(message).encode() for message in drafts])
    with TestClient(create_app(desk)) as client:
        for chat_id, variant in expected.items():
            body = {"decision": "approve"} if variant == "a" else {"decision": "reject", "reason": "draft_unusable"}
            assert client.post(f"/api/drafts/{chat_id}/decision", json={**body, "reviewer": "ana"}).status_code == 200
        stats = {s["variant"]: (s["decided"], s["accepted"]["count"]) for s in client.get("/api/stats").json()}
    counts = Counter(expected.values())
    assert stats == {"a": (counts["a"], counts["a"]), "b": (counts["b"], 0)}


def test_in_one_process_the_steps_of_a_preset_share_one_model(tiny_gemma, tmp_path):
    variants = _variants_file(tmp_path / "variants.toml", tiny_gemma)
    options = TriageOptions(["--model", tiny_gemma, "--apology_variants", variants, *TINY_FLAGS])
    triage = triage_model(options)
    steps = apology_steps(options, apology_variants(options))
    TriageChats.from_models(triage, steps)
    handlers = [triage[0], *(step.handler for step in steps)]
    assert len({id(handler.load_model()) for handler in handlers}) == 1


def test_a_replayed_chat_keeps_its_variant(tiny_gemma, tmp_path):
    variants = _variants_file(tmp_path / "variants.toml", tiny_gemma)
    letters = write_lines(tmp_path / "letters.jsonl", [
        json.loads(DeadLetter(
            payload=json.dumps(chat), stage=Stage.TRIAGE_INFERENCE, reason="RESOURCE_EXHAUSTED", chat_id=chat["id"]
        ).model_dump_json())
        for chat in _negative_chats()
    ])
    out = tmp_path / "replay"
    replay.run(["--input", str(letters), "--output_dir", str(out), "--model", tiny_gemma, "--apology_variants",
                variants, *TINY_FLAGS]).wait_until_finish()
    assert {m["chat_id"]: m["variant"] for m in read_lines(out, "negative")} == _expected_variants()


@pytest.mark.slow
def test_the_shipped_variants_draft_on_the_real_270m(tmp_path):
    """The shipped file on the real Gemma 3 270M: one complaint for each variant, through the batch job."""
    shares = [variant.share for variant in read_variants(str(SHIPPED))]
    ids = [next(f"c{n}" for n in range(100) if variant_index(f"c{n}", shares) == index) for index in range(2)]
    # The same complaint for both: on the other one (a double charge) the whole-task LoRA writes an empty draft,
    # which is dead-lettered as it should be, but is not what this test is about.
    complaint = next(text for _, text, label in OBVIOUS_CHATS if label == -1)
    chats = [{"id": chat_id, "user_id": 5, "chat_message": complaint} for chat_id in ids]
    out = tmp_path / "out"
    batch.run(["--input", str(write_lines(tmp_path / "chats.jsonl", chats)), "--output_dir", str(out),
               "--apology_variants", str(SHIPPED), "--share_model_across_processes=false"])
    drafts = read_lines(out, "negative")
    assert {(m["chat_id"], m["variant"], m["model_id"], m["apology_prompt_version"]) for m in drafts} == {
        (ids[0], "apology-lora", "gemma3-270m-apology-lora", "apology-task-v1"),
        (ids[1], "task-lora", "gemma3-270m-task-lora", "apology-task-v1"),
    }
