"""Fine-tuning entry point: LoRA on a KerasHub Gemma preset for the sentiment label the scoring prompt reads.

    python -m training.tune --labeled ../shared/data/tweeteval_sentiment_train.jsonl --output DIR [--base PRESET]

Each labeled row is rendered with the tuned family's scoring prompt (`prompts/tuned/triage_score.toml`); the
backbone's last hidden state is projected onto the label tokens' embeddings only (Gemma ties them to the output
layer), and the LoRA weights are trained with a class-weighted cross-entropy over those three logits, which is
what score mode's argmax reads. A share of the rows is held out: after each epoch its macro recall is reported
and the best epoch's weights kept; training stops when it has not improved for `--patience` epochs. The output
is a LoRA preset (`handlers.lora`) that `--model` loads. The report is printed as JSON on the last line.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from handlers import lora, native_logs
from handlers.shapes import length_buckets
from pipeline.contracts import LabeledExample
from pipeline.prompts import Family, PromptTemplate, SentimentMode, load_prompt, prompt_name
from training.evaluate import CLASSES, load_labeled, score
from training.options import tune_options

TUNED_PROMPT = prompt_name("triage", Family.TUNED, SentimentMode.SCORE)


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


class Encoded:
    """Rows tokenised once, in Python (KerasHub's tf.data preprocessing loses the tokenizer inside `fit()`)."""

    def __init__(self, examples: list[LabeledExample], prompt: PromptTemplate, tokenizer, max_tokens: int):
        sequences = []
        for start in range(0, len(examples), 256):
            chunk = examples[start : start + 256]
            for ids in tokenizer([prompt.render(chat=example.text) for example in chunk]):
                sequences.append([tokenizer.start_token_id, *np.asarray(ids).tolist()])
        labels = list(prompt.scoring.labels.values())
        kept = [index for index, sequence in enumerate(sequences) if len(sequence) <= max_tokens]
        self.dropped = len(sequences) - len(kept)
        self.sequences = [sequences[index] for index in kept]
        self.ids = [str(examples[index].id) for index in kept]
        self.targets = np.asarray([labels.index(examples[index].label) for index in kept], dtype="int32")
        self.buckets = length_buckets(max_tokens)

    def batches(self, batch_size: int, rng: np.random.Generator | None = None):
        """(token matrix, last positions, targets, row mask, row indices) per batch; rows of one length bucket
        share a batch, and batches are padded to `batch_size` rows, so the step compiles once per bucket."""
        groups = defaultdict(list)
        for index, sequence in enumerate(self.sequences):
            groups[next(b for b in self.buckets if b >= len(sequence))].append(index)
        plan = []
        for width, indices in sorted(groups.items()):
            if rng is not None:
                rng.shuffle(indices)
            plan += [(width, indices[start : start + batch_size]) for start in range(0, len(indices), batch_size)]
        if rng is not None:
            rng.shuffle(plan)
        for width, indices in plan:
            tokens = np.zeros((batch_size, width), dtype="int32")
            last = np.zeros(batch_size, dtype="int32")
            targets = np.zeros(batch_size, dtype="int32")
            mask = np.zeros(batch_size, dtype="float32")
            for row, index in enumerate(indices):
                sequence = self.sequences[index]
                tokens[row, : len(sequence)] = sequence
                last[row] = len(sequence) - 1
                targets[row] = self.targets[index]
                mask[row] = 1.0
            yield tokens, last, targets, mask, indices


class LabelHead:
    """Jitted training and scoring steps over the label tokens' logits only, never the whole vocabulary."""

    def __init__(self, backbone, label_ids: list[int], class_weights: np.ndarray, learning_rate: float):
        import jax
        import keras

        self._backbone = backbone
        embeddings = backbone.token_embedding.embeddings
        self._embedding_index = next(i for i, v in enumerate(backbone.non_trainable_variables) if v is embeddings)
        self._label_ids = np.asarray(label_ids, dtype="int32")
        self._class_weights = np.asarray(class_weights, dtype="float32")
        self.optimizer = keras.optimizers.Adam(learning_rate)
        self.optimizer.build(backbone.trainable_variables)
        self.trainable = [v.value for v in backbone.trainable_variables]
        self._non_trainable = [v.value for v in backbone.non_trainable_variables]
        self._optimizer_state = [v.value for v in self.optimizer.variables]
        self._train_step = jax.jit(self._step, donate_argnums=(0, 1))
        self._logits = jax.jit(self._label_logits)

    def _label_logits(self, trainable, non_trainable, tokens, last):
        import jax.numpy as jnp

        hidden, _ = self._backbone.stateless_call(
            trainable, non_trainable, {"token_ids": tokens, "padding_mask": tokens != 0}
        )
        at_last = hidden[jnp.arange(hidden.shape[0]), last]
        label_embeddings = jnp.take(non_trainable[self._embedding_index], self._label_ids, axis=0)
        return (at_last @ label_embeddings.T).astype("float32")

    def _loss(self, trainable, non_trainable, tokens, last, targets, mask):
        import jax
        import jax.numpy as jnp

        logits = self._label_logits(trainable, non_trainable, tokens, last)
        picked = jnp.take_along_axis(jax.nn.log_softmax(logits), targets[:, None], axis=1)[:, 0]
        weights = mask * jnp.take(self._class_weights, targets)
        return -(weights * picked).sum() / jnp.maximum(mask.sum(), 1.0)

    def _step(self, trainable, optimizer_state, non_trainable, tokens, last, targets, mask):
        import jax

        loss, grads = jax.value_and_grad(self._loss)(trainable, non_trainable, tokens, last, targets, mask)
        trainable, optimizer_state = self.optimizer.stateless_apply(optimizer_state, grads, trainable)
        return trainable, optimizer_state, loss

    def train(self, tokens, last, targets, mask) -> float:
        self.trainable, self._optimizer_state, loss = self._train_step(
            self.trainable, self._optimizer_state, self._non_trainable, tokens, last, targets, mask
        )
        return float(loss)

    def logits(self, data: Encoded, batch_size: int) -> np.ndarray:
        """The label logits of every row, shape (rows, labels), in the rows' order."""
        logits = np.zeros((len(data.sequences), len(self._label_ids)), dtype="float32")
        for tokens, last, _, _, indices in data.batches(batch_size):
            batch = np.asarray(self._logits(self.trainable, self._non_trainable, tokens, last))
            logits[indices] = batch[: len(indices)]
        return logits

    def store(self) -> None:
        """Copies the trained LoRA weights into the backbone's variables, for saving (the training step donates
        its buffers, so the variables get copies)."""
        for variable, value in zip(self._backbone.trainable_variables, self.trainable):
            variable.assign(np.asarray(value))


def predictions(data: Encoded, logits: np.ndarray) -> dict[str, int]:
    """Each row's predicted sentiment: the label with the highest logit."""
    return {row_id: list(CLASSES)[int(best)] for row_id, best in zip(data.ids, logits.argmax(axis=1))}


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
    prompt = load_prompt(TUNED_PROMPT, options.prompts_dir)
    examples = [
        LabeledExample.model_validate({"id": chat["id"], "text": chat["chat_message"], "label": label})
        for pattern in options.labeled for chat, label in load_labeled(pattern)
    ]
    training_rows, held_out_rows = split(examples, options.validation_share, options.seed, options.limit)
    logging.info("%d training rows, %d held out", len(training_rows), len(held_out_rows))

    model = keras_hub.models.CausalLM.from_preset(options.base)
    backbone, tokenizer = model.backbone, model.preprocessor.tokenizer
    backbone.enable_lora(rank=options.rank)
    frozen = backbone.transformer_layers[: len(backbone.transformer_layers) - options.train_layers]
    for layer in frozen:
        # Their LoRA weights stay zero: gradients then stop at the first trained layer, which saves most of the
        # backward pass (the forward pass still runs through every layer).
        layer.trainable = False
    training = Encoded(training_rows, prompt, tokenizer, options.max_tokens)
    held_out = Encoded(held_out_rows, prompt, tokenizer, options.max_tokens)
    labels = list(prompt.scoring.labels)
    label_ids = [int(np.asarray(tokenizer.tokenize(label)).ravel()[0]) for label in labels]
    head = LabelHead(backbone, label_ids, _class_weights(training.targets), options.learning_rate)
    held_out_labels = {held_out.ids[i]: list(CLASSES)[int(t)] for i, t in enumerate(held_out.targets)}

    output = Path(options.output)
    description = {
        "base": lora.base_description(options.base),
        "rank": options.rank,
        "prompt": {"family": Family.TUNED.value, "name": TUNED_PROMPT, "version": prompt.version},
        "data": {
            "labeled": options.labeled,
            "label_counts": {CLASSES[label]: n for label, n in sorted(Counter(e.label for e in examples).items())},
            "training_rows": len(training.sequences), "held_out_rows": len(held_out.sequences),
            "dropped_longer_than_max_tokens": training.dropped + held_out.dropped,
            "limit": options.limit,
        },
        "seed": options.seed,
        "hyper_parameters": {
            "epochs": options.epochs, "batch_size": options.batch_size, "learning_rate": options.learning_rate,
            "optimizer": "adam", "loss": "class-weighted cross-entropy over the label tokens",
            "lora_targets": backbone.default_lora_layer_names(), "train_layers": options.train_layers,
            "validation_share": options.validation_share, "patience": options.patience,
            "max_tokens": options.max_tokens,
        },
    }
    rng = np.random.default_rng(options.seed)
    history, best, waited, train_seconds = [], None, 0, 0.0
    for epoch in range(1, options.epochs + 1):
        progress = keras.utils.Progbar(len(training.sequences), stateful_metrics=["loss", "examples/s"])
        started, seen, losses = time.monotonic(), 0, []
        for tokens, last, targets, mask, indices in training.batches(options.batch_size, rng):
            losses.append(head.train(tokens, last, targets, mask))
            seen += len(indices)
            rate = seen / (time.monotonic() - started)
            progress.update(seen, [("loss", float(np.mean(losses[-50:]))), ("examples/s", rate)])
        epoch_seconds = time.monotonic() - started
        train_seconds += epoch_seconds
        held_out_logits = head.logits(held_out, options.batch_size)
        metrics = score(held_out_labels, predictions(held_out, held_out_logits))
        record = {
            "epoch": epoch, "train_loss": round(float(np.mean(losses)), 4), "epoch_seconds": round(epoch_seconds, 1),
            "examples_per_second": round(len(training.sequences) / epoch_seconds, 3),
            "held_out_macro_recall": metrics["macro_recall"], "held_out_recall": metrics["recall"],
        }
        history.append(record)
        print(json.dumps(record), flush=True)
        if best is None or metrics["macro_recall"] > best["held_out_macro_recall"]:
            best, waited = record, 0
            calibration = calibrate(held_out, held_out_logits, labels, held_out_labels)
            # Saved at once, so an interrupted run still leaves its best epoch behind.
            head.store()
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


def calibrate(held_out: Encoded, logits: np.ndarray, labels: list[str], held_out_labels: dict[str, int]) -> dict:
    """The manifest's `label_offsets` (which `handlers.lora.label_offsets` hands to the handler), fitted on the
    held-out rows, and their macro recall with them (optimistic: fitted on the same rows)."""
    # Rounded before they are scored, so the figure is that of the offsets the manifest records.
    offsets = np.round(fit_label_offsets(logits, held_out.targets), 2)
    metrics = score(held_out_labels, predictions(held_out, logits + offsets))
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
