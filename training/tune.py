"""Fine-tuning entry point: LoRA on a KerasHub Gemma preset, for the sentiment label (`--family tuned`) or for the
whole task (`--family task`): the label, the one-sentence summary and, for complaints, the reply.

    python -m training.tune --labeled ../shared/data/tweeteval_sentiment_train.jsonl --output DIR [--base PRESET]
    python -m training.tune --family task --labeled 'data/support_chats/train.jsonl' --output DIR [--init LORA]

Each labeled row is rendered with its family's scoring prompt (`prompts/<family>/triage_score.toml`): the label is
learned from the label tokens' logits after it (what score mode's argmax reads), with a class-weighted
cross-entropy. In the task family, a row with a reference summary also teaches the summary written after its true
label, and one with a reference reply the reply written after the apology prompt (`prompts/task/apology.toml`): a
teacher-forced cross-entropy on their tokens. One adapter serves both steps, so they share one model.
A share of the rows is held out: after each epoch its macro recall and text loss are reported and the best epoch's
weights kept; training stops when it has not improved for `--patience` epochs. The output is a LoRA preset
(`handlers.lora`) that `--model` loads. The report is printed as JSON on the last line.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import random
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from handlers import lora, native_logs
from pipeline.contracts import LabeledExample
from pipeline.prompts import Family, SentimentMode, load_prompt, prompt_name
from training.encoding import STEPS, Encoder, Sequence, batches, encode
from training.evaluate import CLASSES, read_examples, score
from training.lora_steps import LoraTrainer
from training.options import tune_options

TUNED_PROMPT = prompt_name("triage", Family.TUNED, SentimentMode.SCORE)


def prompts_of(family: Family) -> tuple[str, str]:
    """The triage (score mode) and apology prompts a LoRA of `family` is trained on."""
    return prompt_name("triage", family, SentimentMode.SCORE), prompt_name("apology", family)


def split(
    examples: list[LabeledExample], validation_share: float, seed: int, limit: int | None
) -> tuple[list[LabeledExample], list[LabeledExample]]:
    """(training, held-out) rows: the same share of each class held out, the rest shuffled and cut to `limit`."""
    by_label = defaultdict(list)
    for example in examples:
        by_label[example.label].append(example)
    rng = random.Random(seed)
    training, held_out = [], []
    for label in sorted(by_label):
        rows = by_label[label]
        rng.shuffle(rows)
        cut = round(len(rows) * validation_share)
        held_out += rows[:cut]
        training += rows[cut:]
    rng.shuffle(training)
    rng.shuffle(held_out)
    return training[:limit], held_out


def predictions(logits: np.ndarray) -> dict[str, int]:
    """Each row's predicted sentiment (rows keyed by their index): the label with the highest logit."""
    return {str(row): list(CLASSES)[int(best)] for row, best in enumerate(logits.argmax(axis=1))}


def fit_label_offsets(logits: np.ndarray, targets: np.ndarray, step: float = 0.05, span: float = 4.0) -> np.ndarray:
    """Per-label offsets, added to the logits, that maximise macro recall on these rows (the first label's is 0).

    Class weights balance the training loss, yet a model can still lean to some labels on rows it has not
    seen; two offsets, fitted on held-out rows by a grid search, correct that lean without touching the weights.
    """
    grid = np.arange(-span, span + step / 2, step, dtype="float32")
    first, second = np.meshgrid(grid, grid, indexing="ij")
    offsets = np.stack([np.zeros_like(first), first, second], axis=-1).reshape(-1, 1, 3)
    predicted = (logits[None] + offsets).argmax(axis=-1)
    recalls = np.stack([(predicted == label)[:, targets == label].mean(axis=1) for label in range(3)], axis=1)
    # Ties go to the smallest correction.
    best = np.lexsort((np.abs(offsets[:, 0]).sum(axis=1), -recalls.mean(axis=1)))[0]
    return offsets[best, 0]


def _class_weights(targets: np.ndarray) -> np.ndarray:
    """Inverse class frequencies, mean 1 over the rows: each class counts alike, as macro recall does."""
    counts = np.bincount(targets, minlength=len(CLASSES)).astype("float64")
    return (len(targets) / (len(CLASSES) * np.maximum(counts, 1))).astype("float32")


def run(argv: list[str] | None = None) -> dict:
    """Parses flags, trains, saves the LoRA preset and returns (and prints) its manifest."""
    import keras

    keras_hub = native_logs.keras_hub()
    options = tune_options(argv)
    if not options.base:
        from handlers import gguf_preset

        options.base = str(gguf_preset.build_preset())
    keras.utils.set_random_seed(options.seed)
    family = Family(options.family)
    triage_name, apology_name = prompts_of(family)
    triage, apology = load_prompt(triage_name, options.prompts_dir), load_prompt(apology_name, options.prompts_dir)
    unmatched = [pattern for pattern in options.labeled if not glob.glob(pattern)]
    if unmatched:
        raise FileNotFoundError(f"no file matches {', '.join(unmatched)}")
    examples = [example for pattern in options.labeled for example in read_examples(pattern)]
    if family is Family.TUNED:
        # Its scoring prompt hands the summary to the base prompt's examples: it learns the label only.
        examples = [example.model_copy(update={"summary": None, "reply": None}) for example in examples]
    training_rows, held_out_rows = split(examples, options.validation_share, options.seed, options.limit)
    training_rows = _cap_label_only(training_rows, options.max_label_only_rows)
    logging.info("%d training rows, %d held out", len(training_rows), len(held_out_rows))

    model = keras_hub.models.CausalLM.from_preset(options.base)
    backbone, tokenizer = model.backbone, model.preprocessor.tokenizer
    backbone.enable_lora(rank=options.rank)
    if options.init:
        # Warm start: a LoRA preset trained before (same base and rank) carries on, e.g. the sentiment LoRA.
        backbone.load_lora_weights(str(Path(options.init, lora.ADAPTER_NAME)))
    frozen = backbone.transformer_layers[: len(backbone.transformer_layers) - options.train_layers]
    for layer in frozen:
        # Their LoRA weights stay zero: gradients then stop at the first trained layer, which saves most of the
        # backward pass (the forward pass still runs through every layer).
        layer.trainable = False
    encoder = Encoder(tokenizer, triage, apology)
    steps = STEPS if options.step == "all" else (options.step,)
    training, training_dropped = _fitting(encode(encoder, training_rows, steps), options.max_tokens)
    held_out, held_out_dropped = _fitting(encode(encoder, held_out_rows, steps), options.max_tokens)
    labelled = [sequence for sequence in held_out if sequence.label >= 0]
    labels = list(triage.scoring.labels)
    label_ids = [int(np.asarray(tokenizer.tokenize(label)).ravel()[0]) for label in labels]
    vocabulary = np.unique([token for s in training + held_out if s.text_from for token in s.tokens[s.text_from :]])
    targets = np.asarray([sequence.label for sequence in training if sequence.label >= 0], dtype="int64")
    trainer = LoraTrainer(backbone, label_ids, _class_weights(targets), vocabulary, options.learning_rate)
    held_out_labels = {str(index): list(CLASSES)[sequence.label] for index, sequence in enumerate(labelled)}
    held_out_targets = np.asarray([sequence.label for sequence in labelled])
    # Text rows are few beside the label-only rows: each epoch goes over them `text_repeats` times.
    schedule = training + [s for s in training if s.text_from] * (options.text_repeats - 1)

    output = Path(options.output)
    description = {
        "base": lora.base_description(options.base),
        "rank": options.rank,
        "prompt": {"family": family.value, "name": triage_name, "version": triage.version},
        "apology_prompt": {"name": apology_name, "version": apology.version},
        "data": {
            "labeled": options.labeled,
            "label_counts": {CLASSES[label]: n for label, n in sorted(Counter(e.label for e in examples).items())},
            "training_rows": len(training_rows), "held_out_rows": len(held_out_rows),
            "training_sequences": len(training), "text_sequences": sum(1 for s in training if s.text_from),
            "dropped_longer_than_max_tokens": training_dropped + held_out_dropped,
            "limit": options.limit, "max_label_only_rows": options.max_label_only_rows,
        },
        "steps": list(steps),
        "seed": options.seed,
        "init": {"path": options.init, "adapter_sha256": _sha256(Path(options.init, lora.ADAPTER_NAME))}
        if options.init else None,
        "hyper_parameters": {
            "epochs": options.epochs, "batch_size": options.batch_size, "learning_rate": options.learning_rate,
            "optimizer": "adam",
            "loss": "class-weighted cross-entropy over the label tokens, plus cross-entropy of each summary and "
            "reply token over the vocabulary of the training texts",
            "text_vocabulary": len(vocabulary), "text_repeats": options.text_repeats,
            "lora_targets": backbone.default_lora_layer_names(), "train_layers": options.train_layers,
            "validation_share": options.validation_share, "patience": options.patience,
            "max_tokens": options.max_tokens,
        },
    }
    rng = np.random.default_rng(options.seed)
    history, best, waited, train_seconds = [], None, 0, 0.0
    for epoch in range(1, options.epochs + 1):
        progress = keras.utils.Progbar(len(schedule), stateful_metrics=["loss", "sequences/s"])
        started, seen, losses = time.monotonic(), 0, []
        for batch in batches(schedule, options.batch_size, options.max_tokens, rng):
            losses.append(trainer.train(batch))
            seen += len(batch.rows)
            rate = seen / (time.monotonic() - started)
            progress.update(seen, [("loss", float(np.mean(losses[-50:]))), ("sequences/s", rate)])
        epoch_seconds = time.monotonic() - started
        train_seconds += epoch_seconds
        record = {
            "epoch": epoch, "train_loss": round(float(np.mean(losses)), 4), "epoch_seconds": round(epoch_seconds, 1),
            "sequences_per_second": round(len(schedule) / epoch_seconds, 3),
            "held_out_text_loss": round(trainer.text_loss(held_out, options.batch_size, options.max_tokens), 4),
        }
        if labelled:
            held_out_logits = trainer.label_logits(labelled, options.batch_size, options.max_tokens)
            metrics = score(held_out_labels, predictions(held_out_logits))
            record |= {"held_out_macro_recall": metrics["macro_recall"], "held_out_recall": metrics["recall"]}
        history.append(record)
        print(json.dumps(record), flush=True)
        if best is None or _better(record, best):
            best, waited = record, 0
            calibration = calibrate(held_out_logits, held_out_targets, labels, held_out_labels) if labelled else {}
            # Saved at once, so an interrupted run still leaves its best epoch behind.
            trainer.store()
            _save(backbone, output, {**description, "kept_epoch": epoch, **calibration})
        else:
            waited += 1
            if waited >= options.patience:
                break
    manifest = {
        **description, "kept_epoch": best["epoch"], **calibration, "history": history,
        "training_seconds": round(train_seconds, 1),
    }
    (output / lora.MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"output": str(output), "kept_epoch": best["epoch"], **best}))
    return manifest


def _better(record: dict, best: dict) -> bool:
    """Whether an epoch beats the best so far: by held-out macro recall where the adapter learns labels, else (an
    apology adapter) by the held-out replies' loss."""
    if "held_out_macro_recall" in record:
        return record["held_out_macro_recall"] > best["held_out_macro_recall"]
    return record["held_out_text_loss"] < best["held_out_text_loss"]


def _sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _cap_label_only(rows: list[LabeledExample], cap: int | None) -> list[LabeledExample]:
    """The rows, with at most `cap` of those that carry no reference text (the first ones: rows are shuffled)."""
    if cap is None:
        return rows
    label_only = [row for row in rows if not row.has_references][:cap]
    kept = {id(row) for row in label_only}
    return [row for row in rows if row.has_references or id(row) in kept]


def _fitting(sequences: list[Sequence], max_tokens: int) -> tuple[list[Sequence], int]:
    """The sequences no longer than `max_tokens`, and how many were longer."""
    kept = [sequence for sequence in sequences if len(sequence.tokens) <= max_tokens]
    return kept, len(sequences) - len(kept)


def calibrate(logits: np.ndarray, targets: np.ndarray, labels: list[str], held_out_labels: dict[str, int]) -> dict:
    """The manifest's `label_offsets` (which `handlers.lora.label_offsets` hands to the handler), fitted on the
    held-out rows, and their macro recall with them (optimistic: fitted on the same rows)."""
    # Rounded before they are scored, so the figure is that of the offsets the manifest records.
    offsets = np.round(fit_label_offsets(logits, targets), 2)
    metrics = score(held_out_labels, predictions(logits + offsets))
    return {
        # float32 0.3 prints as 0.30000001192092896: rounded again as a Python float for the manifest.
        "label_offsets": {label: round(float(offset), 2) for label, offset in zip(labels, offsets)},
        "held_out_with_offsets": {"macro_recall": metrics["macro_recall"], "recall": metrics["recall"]},
    }


def _save(backbone, output: Path, manifest: dict) -> None:
    output.mkdir(parents=True, exist_ok=True)
    backbone.save_lora_weights(str(output / lora.ADAPTER_NAME))
    (output / lora.MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    run()
