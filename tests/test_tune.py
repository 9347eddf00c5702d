"""`python -m training.tune` trains a LoRA preset that every entry point loads with `--model`."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from handlers import lora, native_logs
from pipeline import batch
from pipeline.contracts import LabeledExample
from pipeline.models import SHIPPED_APOLOGY_LORA, SHIPPED_TRIAGE_LORA
from pipeline.prompts import Family, SentimentMode, detect_family, load_prompt, prompt_name
from tests.support import OBVIOUS_CHATS, read_lines, write_lines
from training import evaluate, text_metrics, tune
from training.encoding import Encoder, batches, encode

REPOSITORY = Path(__file__).resolve().parents[1]
TUNED_VERSION = load_prompt(tune.TUNED_PROMPT).version
TASK_VERSION = load_prompt(prompt_name("triage", Family.TASK, SentimentMode.SCORE)).version

# Rows a tiny model can learn in a few epochs: each class has its own words.
WORDS = {
    -1: ["cold", "late", "rude", "awful"], 0: ["hours", "address", "menu", "open"],
    1: ["great", "thanks", "love", "fast"],
}


def _separable_rows() -> list[dict]:
    rows = []
    for label, words in WORDS.items():
        for i, word in enumerate(words * 3):
            rows.append({"id": f"{label}-{i}", "text": f"{word} {word} {word}", "label": label})
    return rows


def test_the_split_holds_out_the_same_share_of_each_class_and_limits_the_rest():
    examples = [LabeledExample(id=i, text="x", label=label) for i, label in enumerate([-1] * 20 + [0] * 50 + [1] * 30)]
    training, held_out = tune.split(examples, 0.1, seed=0, limit=None)
    assert sorted(e.label for e in held_out) == [-1] * 2 + [0] * 5 + [1] * 3
    assert {e.id for e in training}.isdisjoint({e.id for e in held_out}) and len(training) == 90
    limited, held_out_again = tune.split(examples, 0.1, seed=0, limit=40)
    assert len(limited) == 40 and held_out_again == held_out


def test_class_weights_count_each_class_alike():
    weights = tune._class_weights(np.asarray([0] * 10 + [1] * 30 + [2] * 60))
    assert weights * np.asarray([10, 30, 60]) == pytest.approx([100 / 3] * 3)


@pytest.fixture(scope="module")
def tuned_tiny(tiny_gemma, tmp_path_factory) -> Path:
    """A LoRA of the tiny preset, trained through the command on the separable rows."""
    work = tmp_path_factory.mktemp("tuned")
    rows = write_lines(work / "rows.jsonl", _separable_rows())
    output = work / "tiny-sentiment-lora"
    tune.run([
        "--labeled", str(rows), "--base", tiny_gemma, "--output", str(output), "--rank", "4", "--epochs", "12",
        "--batch_size", "8", "--learning_rate", "0.01", "--validation_share", "0.25", "--patience", "12",
        "--train_layers", "2", "--max_tokens", "384",
    ])
    return output


def test_the_tuned_preset_records_its_base_and_training(tuned_tiny, tiny_gemma):
    manifest = lora.read_manifest(tuned_tiny)
    checksum = lora.weights_sha256(tiny_gemma)
    assert manifest["base"] == {"model_id": Path(tiny_gemma).name, "path": tiny_gemma, "weights_sha256": checksum}
    assert manifest["prompt"] == {"family": "tuned", "name": "tuned/triage_score", "version": TUNED_VERSION}
    assert (manifest["rank"], manifest["seed"], manifest["data"]["held_out_rows"]) == (4, 0, 9)
    assert manifest["history"][0]["epoch"] == 1 and manifest["kept_epoch"] in range(1, 13)
    assert (tuned_tiny / lora.ADAPTER_NAME).stat().st_size < 1_000_000
    assert detect_family(str(tuned_tiny)) is Family.TUNED
    assert list(manifest["label_offsets"]) == [" negative", " neutral", " positive"]
    kept = manifest["history"][manifest["kept_epoch"] - 1]["held_out_macro_recall"]
    assert manifest["held_out_with_offsets"]["macro_recall"] >= kept


def test_label_offsets_reach_the_handler_only_with_the_prompt_they_were_fitted_on(tuned_tiny):
    offsets = lora.read_manifest(tuned_tiny)["label_offsets"]
    assert lora.label_offsets(str(tuned_tiny), tune.TUNED_PROMPT) == offsets
    assert lora.label_offsets(str(tuned_tiny), "base/triage_score") == {}


def test_label_offsets_lift_the_label_the_model_neglects():
    rng = np.random.default_rng(0)
    targets = np.repeat([0, 1, 2], 200)
    logits = rng.normal(size=(600, 3)).astype("float32")
    logits[np.arange(600), targets] += 2.0
    logits[:, 1] -= 3.0  # a model that reads most neutral rows as something else

    def macro_recall(scores):
        return np.mean([(scores.argmax(axis=1)[targets == label] == label).mean() for label in range(3)])

    offsets = tune.fit_label_offsets(logits, targets)
    assert offsets[0] == 0 and 2.0 < offsets[1] < 4.0
    assert macro_recall(logits + offsets) > macro_recall(logits) + 0.15


def test_tuning_beats_the_base_on_the_same_rows(tuned_tiny, tiny_gemma, tmp_path):
    rows = write_lines(tmp_path / "rows.jsonl", _separable_rows())
    comparison = evaluate.run([
        "--labeled", str(rows), "--model", str(tuned_tiny), "--compare", tiny_gemma, "--model_family", "auto",
        "--sentiment_only", "--max_length", "384",
    ])
    tuned, base = comparison.reports
    assert (tuned.model_id, tuned.prompt_version) == ("tiny-sentiment-lora", TUNED_VERSION)
    assert tuned.sentiment_only and tuned.valid_share == 1.0
    assert tuned.macro_recall >= 0.75, tuned.confusion
    assert tuned.macro_recall > base.macro_recall
    (pair,) = comparison.paired
    assert (pair.model_id, pair.against) == (base.model_id, tuned.model_id)
    assert pair.macro_recall_difference == pytest.approx(base.macro_recall - tuned.macro_recall, abs=1e-4)
    assert pair.low <= pair.macro_recall_difference <= pair.high


def test_the_batch_job_runs_the_tuned_preset(tuned_tiny, tmp_path):
    chats = write_lines(tmp_path / "chats.jsonl", [
        {"id": 1, "user_id": 5, "chat_message": "awful awful awful"},
        {"id": 2, "user_id": 5, "chat_message": "love love love"},
    ])
    out = tmp_path / "out"
    batch.run([
        "--input", str(chats), "--output_dir", str(out), "--model", str(tuned_tiny),
        "--max_length", "384", "--apology_max_length", "384",
    ])
    records = [json.loads(line) for path in out.glob("*.jsonl") for line in path.open()]
    # The tiny model's summaries are noise; what matters is that every chat went through the tuned model and prompt.
    assert len(records) == 2
    for record in records:
        assert record["model_id"] == "tiny-sentiment-lora"
        assert TUNED_VERSION in (record.get("prompt_version"), record.get("triage_prompt_version"))


def _adapter_arrays(preset: Path) -> dict[str, np.ndarray]:
    import h5py

    arrays = {}
    with h5py.File(preset / lora.ADAPTER_NAME) as weights:
        weights.visititems(
            lambda name, item: arrays.update({name: item[()]}) if isinstance(item, h5py.Dataset) else None
        )
    return arrays


def test_the_same_seed_trains_the_same_weights(tiny_gemma, tmp_path):
    """What lets `make tune` reproduce the shipped preset: the split, the batch order and the LoRA init follow
    the seed, and the training step is deterministic."""
    rows = write_lines(tmp_path / "rows.jsonl", _separable_rows())
    trained = []
    for output in (tmp_path / "first", tmp_path / "second"):
        tune.run([
            "--labeled", str(rows), "--base", tiny_gemma, "--output", str(output), "--rank", "4", "--epochs", "2",
            "--batch_size", "8", "--learning_rate", "0.01", "--validation_share", "0.25", "--train_layers", "2",
            "--max_tokens", "384", "--seed", "3",
        ])
        trained.append(_adapter_arrays(output))
    first, second = trained
    assert first.keys() == second.keys() and any(np.any(array != 0) for array in first.values())
    assert [name for name in first if not np.array_equal(first[name], second[name])] == []


def test_a_changed_base_is_refused(tuned_tiny, tiny_gemma, tmp_path):
    moved = tmp_path / "lora"
    shutil.copytree(tuned_tiny, moved)
    manifest = lora.read_manifest(moved)
    manifest["base"]["weights_sha256"] = "0" * 64
    (moved / lora.MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(lora.BaseMismatchError, match="trained on 000000000000"):
        lora.load_causal_lm(str(moved))


def test_tuned_families_have_the_prompts_they_were_trained_on_and_the_base_ones_otherwise():
    assert prompt_name("triage", Family.TUNED, SentimentMode.SCORE) == "tuned/triage_score"
    assert prompt_name("triage", Family.TUNED, SentimentMode.GENERATE) == "base/triage_generate"
    assert prompt_name("apology", Family.TUNED) == "base/apology"
    assert tune.prompts_of(Family.TASK) == ("task/triage_score", "task/apology")
    assert prompt_name("triage", Family.TASK, SentimentMode.GENERATE) == "base/triage_generate"


def _tiny_encoder(tiny_gemma: str) -> Encoder:
    tokenizer = native_logs.keras_hub().tokenizers.Tokenizer.from_preset(tiny_gemma)
    return Encoder(tokenizer, *map(load_prompt, tune.prompts_of(Family.TASK)))


COMPLAINT = LabeledExample(
    id="c1", text="The pizza was cold.", label=-1, summary="Cold pizza.", reply="Sorry about the cold pizza."
)


def test_a_complaint_teaches_its_label_its_summary_and_its_reply(tiny_gemma):
    encoder = _tiny_encoder(tiny_gemma)
    summary, reply = encode(encoder, [COMPLAINT])
    label_only = encoder.label_row(COMPLAINT)
    # The label is read where the scoring prompt ends, as the handler reads it; the summary follows the true label.
    assert summary.tokens[: len(label_only.tokens)] == label_only.tokens
    assert (summary.label_at, summary.label) == (label_only.label_at, 0)
    tokenizer = native_logs.keras_hub().tokenizers.Tokenizer.from_preset(tiny_gemma)
    assert tokenizer.detokenize(list(summary.tokens[summary.text_from :])) == " Cold pizza.\n"
    assert tokenizer.detokenize(list(reply.tokens[reply.text_from :])) == " Sorry about the cold pizza.\n"
    assert (reply.label, reply.label_at) == (-1, -1)
    assert "Problem: Cold pizza.\nReply:" in tokenizer.detokenize(list(reply.tokens[1 : reply.text_from]))


def test_a_text_batch_pairs_each_position_with_the_token_after_it(tiny_gemma):
    sequences = encode(_tiny_encoder(tiny_gemma), [COMPLAINT, COMPLAINT.model_copy(update={"id": "c2", "reply": None})])
    text_batches = [padded for padded in batches(sequences, 4, 384) if padded.targets is not None]
    assert sum(len(padded.rows) for padded in text_batches) == 3
    for padded in text_batches:
        for row, index in enumerate(padded.rows):
            real = padded.target_mask[row] == 1
            assert real.sum() == sequences[index].text_length
            assert (padded.tokens[row, padded.positions[row, real] + 1] == padded.targets[row, real]).all()


def _tune_task(tiny_gemma, tmp_path, *flags: str) -> dict:
    rows = [
        {"id": f"{label}-{i}", "text": f"{word} {word}", "label": label, "summary": f"The customer said {word}.",
         "reply": f"Sorry about the {word} order." if label == -1 else None}
        for label, words in WORDS.items() for i, word in enumerate(words * 2)
    ]
    return tune.run([
        "--labeled", str(write_lines(tmp_path / "rows.jsonl", rows)), "--base", tiny_gemma, "--output",
        str(tmp_path / "lora"), "--rank", "4", "--epochs", "4", "--patience", "4", "--batch_size", "8",
        "--learning_rate", "0.01", "--validation_share", "0.25", "--train_layers", "2", "--text_repeats", "2",
        "--family", "task", "--max_tokens", "384", *flags,
    ])


def test_tuning_on_reference_texts_lowers_their_held_out_loss(tiny_gemma, tmp_path):
    manifest = _tune_task(tiny_gemma, tmp_path)
    losses = [epoch["held_out_text_loss"] for epoch in manifest["history"]]
    assert losses[-1] < losses[0] * 0.8, losses
    assert manifest["prompt"]["family"] == "task"
    assert manifest["apology_prompt"] == {"name": "task/apology", "version": load_prompt("task/apology").version}
    assert manifest["data"]["text_sequences"] > manifest["data"]["training_rows"]


def test_an_apology_adapter_learns_the_replies_only_and_keeps_its_best_epoch_by_their_loss(tiny_gemma, tmp_path):
    manifest = _tune_task(tiny_gemma, tmp_path, "--step", "apology")
    complaints = sum(1 for _ in WORDS[-1] * 2)
    assert manifest["steps"] == ["apology"]
    # Every sequence is a reply: one per complaint among the training rows, and no label is learned.
    assert manifest["data"]["training_sequences"] == manifest["data"]["text_sequences"] < complaints
    assert "label_offsets" not in manifest
    losses = [epoch["held_out_text_loss"] for epoch in manifest["history"]]
    assert manifest["kept_epoch"] == 1 + losses.index(min(losses))
    assert losses[-1] < losses[0], losses


@pytest.mark.slow
def test_the_shipped_triage_lora_loads_on_the_real_270m_and_reads_obvious_chats(tmp_path):
    """The shipped triage LoRA on the real Gemma 3 270M (its base built into the cache as `make model` does)."""
    assert lora.read_manifest(SHIPPED_TRIAGE_LORA)["base"]["model_id"] == "gemma3_270m_base"
    rows = write_lines(tmp_path / "rows.jsonl", [{"id": i, "text": t, "label": label} for i, t, label in OBVIOUS_CHATS])
    (report,) = evaluate.run(["--labeled", str(rows), "--sentiment_only"]).reports
    assert (report.model_id, report.prompt_version) == (SHIPPED_TRIAGE_LORA.name, TASK_VERSION)
    # Neutral is the tuned model's weak class (README); the plain angry and happy chats must be right.
    assert (report.recall["negative"], report.recall["positive"]) == (1.0, 1.0), report.confusion


@pytest.mark.slow
def test_the_shipped_triage_lora_finds_every_angry_sample_chat():
    (report,) = evaluate.run([
        "--labeled", str(REPOSITORY / "samples" / "chats.jsonl"),
        "--label_file", str(REPOSITORY / "samples" / "labels.jsonl"), "--sentiment_only",
    ]).reports
    assert report.recall["negative"] == 1.0, report.confusion


@pytest.mark.slow
def test_the_default_models_answer_each_complaint_in_its_language_on_the_real_270m(tmp_path):
    """The shipped triage and apology LoRAs, the default of the batch job (no --model): the task prompts."""
    chats = write_lines(tmp_path / "chats.jsonl", [
        {"id": 1, "user_id": 5, "chat_message": "My pizza arrived two hours late and completely cold. Unacceptable."},
        {"id": 2, "user_id": 6, "chat_message": "치킨이 덜 익어서 속이 빨갛게 나왔어요. 너무 불쾌합니다."},
    ])
    out = tmp_path / "out"
    batch.run(["--input", str(chats), "--output_dir", str(out)])
    drafts = {review["chat_id"]: review for review in read_lines(out, "negative")}
    assert sorted(drafts) == ["1", "2"]
    for chat_id, language in (("1", "en"), ("2", "ko")):
        assert text_metrics.language_of(drafts[chat_id]["summary"]) == language, drafts[chat_id]
        assert text_metrics.language_of(drafts[chat_id]["draft_reply"]) == language, drafts[chat_id]
    assert {(review["model_id"], review["apology_prompt_version"]) for review in drafts.values()} == {
        (SHIPPED_APOLOGY_LORA.name, load_prompt("task/apology").version)
    }
