"""Training rows as token sequences: where the label is read, which tokens the model must learn to write, and
batches of them at a few shapes."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from handlers.shapes import bucket, length_buckets
from pipeline.contracts import LabeledExample
from pipeline.prompts import PromptTemplate

# Text targets are padded to one of these lengths (tokens), so the text step compiles a few shapes only.
TARGET_LENGTHS = (32, 64, 128, 192)


@dataclass(frozen=True)
class Sequence:
    """One training sequence: its tokens, the position whose next-token logits give the label (with the label's
    index, or -1 when the row teaches no label) and where the text the model must write starts (0: none)."""

    tokens: tuple[int, ...]
    label_at: int
    label: int
    text_from: int = 0

    @property
    def text_length(self) -> int:
        return len(self.tokens) - self.text_from if self.text_from else 0


class Encoder:
    """Renders rows with the tuned prompts and tokenises them as the handler's prompts are tokenised."""

    def __init__(self, tokenizer, triage: PromptTemplate, apology: PromptTemplate):
        self._tokenizer = tokenizer
        self._triage, self._apology = triage, apology
        self._labels = list(triage.scoring.labels.values())
        self._label_words = list(triage.scoring.labels)

    def _ids(self, text: str) -> list[int]:
        return np.asarray(self._tokenizer.tokenize(text)).tolist()

    def label_row(self, example: LabeledExample) -> Sequence:
        """The scoring prompt, and the label to read after it."""
        prompt = [self._tokenizer.start_token_id, *self._ids(self._triage.render(chat=example.text))]
        return Sequence(tuple(prompt), len(prompt) - 1, self._labels.index(example.label))

    def summary_row(self, example: LabeledExample) -> Sequence:
        """The scoring prompt, the true label and `then`, and the reference summary to write, up to the stop."""
        labelled = self.label_row(example)
        context = [*labelled.tokens, *self._ids(self._label_words[labelled.label] + self._triage.scoring.then)]
        target = self._ids(f" {example.summary}{self._triage.stop[0]}")
        return Sequence((*context, *target), labelled.label_at, labelled.label, text_from=len(context))

    def reply_row(self, example: LabeledExample) -> Sequence:
        """The apology prompt (with the reference summary) and the reference reply to write, up to the stop."""
        prompt = self._apology.render(chat=example.text, summary=example.summary, user_id="")
        context = [self._tokenizer.start_token_id, *self._ids(prompt)]
        target = self._ids(f" {example.reply}{self._apology.stop[0]}")
        return Sequence((*context, *target), -1, -1, text_from=len(context))


# The steps an adapter can learn: the triage step's label and summary, and the apology step's reply.
STEPS = ("triage", "apology")


def encode(encoder: Encoder, examples: list[LabeledExample], steps: tuple[str, ...] = STEPS) -> list[Sequence]:
    """Every example's sequences for `steps`: its label, and the summary and reply it has references for."""
    sequences = []
    for example in examples:
        if "triage" in steps:
            sequences.append(encoder.summary_row(example) if example.summary else encoder.label_row(example))
        if "apology" in steps and example.reply and example.summary:
            sequences.append(encoder.reply_row(example))
    return sequences


@dataclass(frozen=True)
class Batch:
    """Padded arrays of one batch; `rows` are the sequences' indices, `targets` set for text batches only."""

    tokens: np.ndarray  # (rows, width) token ids, 0 = padding
    label_at: np.ndarray  # (rows,) position of the label's logits
    labels: np.ndarray  # (rows,) label index
    label_mask: np.ndarray  # (rows,) 1 where the row teaches a label
    rows: list[int]
    positions: np.ndarray | None = None  # (rows, T) positions whose next token is a target
    targets: np.ndarray | None = None  # (rows, T) the target tokens
    target_mask: np.ndarray | None = None  # (rows, T)


def batches(sequences: list[Sequence], batch_size: int, max_tokens: int, rng: np.random.Generator | None = None):
    """Batches of sequences of one length bucket and one kind (label only, or with text), padded to `batch_size`
    rows; shuffled when `rng` is given."""
    groups, widths = defaultdict(list), length_buckets(max_tokens)
    for index, sequence in enumerate(sequences):
        width = next(length for length in widths if length >= len(sequence.tokens))
        groups[(width, bool(sequence.text_from))].append(index)
    plan = []
    for (width, text), indices in sorted(groups.items()):
        if rng is not None:
            rng.shuffle(indices)
        plan += [(width, text, indices[start : start + batch_size]) for start in range(0, len(indices), batch_size)]
    if rng is not None:
        rng.shuffle(plan)
    for width, text, indices in plan:
        yield _pad([sequences[index] for index in indices], indices, batch_size, width, text)


def _pad(chosen: list[Sequence], indices: list[int], batch_size: int, width: int, text: bool) -> Batch:
    tokens = np.zeros((batch_size, width), dtype="int32")
    label_at = np.zeros(batch_size, dtype="int32")
    labels = np.zeros(batch_size, dtype="int32")
    label_mask = np.zeros(batch_size, dtype="float32")
    for row, sequence in enumerate(chosen):
        tokens[row, : len(sequence.tokens)] = sequence.tokens
        if sequence.label >= 0:
            label_at[row], labels[row], label_mask[row] = sequence.label_at, sequence.label, 1.0
    if not text:
        return Batch(tokens, label_at, labels, label_mask, indices)
    longest = max(sequence.text_length for sequence in chosen)
    length = next((size for size in TARGET_LENGTHS if size >= longest), bucket(longest))
    positions = np.zeros((batch_size, length), dtype="int32")
    targets = np.zeros((batch_size, length), dtype="int32")
    target_mask = np.zeros((batch_size, length), dtype="float32")
    for row, sequence in enumerate(chosen):
        count = sequence.text_length
        # The logits at position p predict the token at p + 1.
        positions[row, :count] = np.arange(sequence.text_from - 1, len(sequence.tokens) - 1)
        targets[row, :count] = sequence.tokens[sequence.text_from :]
        target_mask[row, :count] = 1.0
    return Batch(tokens, label_at, labels, label_mask, indices, positions, targets, target_mask)
