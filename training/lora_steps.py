"""The LoRA's training and scoring steps, jitted: the label read from the label tokens' logits only, and the text
the model must write scored over the vocabulary of the training texts, never the whole vocabulary."""

from __future__ import annotations

import numpy as np

from training.encoding import Batch, Sequence, batches


class LoraTrainer:
    """Trains a backbone's LoRA weights (its trainable variables) with Adam.

    The label loss is a class-weighted cross-entropy over the three label tokens' logits at the label position,
    which is what score mode's argmax reads. The text loss is the cross-entropy of each target token against the
    `vocabulary` (every token of the training texts): Gemma's 262,144-token output layer at every target position
    would cost 30 times more on a CPU, and tokens no training text uses are not what the model must learn to prefer.
    """

    def __init__(self, backbone, label_ids: list[int], class_weights: np.ndarray, vocabulary: np.ndarray,
                 learning_rate: float):
        import jax
        import keras

        self._backbone = backbone
        embeddings = backbone.token_embedding.embeddings
        self._embedding_index = next(i for i, v in enumerate(backbone.non_trainable_variables) if v is embeddings)
        self._label_ids = np.asarray(label_ids, dtype="int32")
        self._class_weights = np.asarray(class_weights, dtype="float32")
        self._vocabulary = np.asarray(vocabulary, dtype="int32")
        self.optimizer = keras.optimizers.Adam(learning_rate)
        self.optimizer.build(backbone.trainable_variables)
        self.trainable = [v.value for v in backbone.trainable_variables]
        self._non_trainable = [v.value for v in backbone.non_trainable_variables]
        self._optimizer_state = [v.value for v in self.optimizer.variables]
        self._label_step = jax.jit(self._step(self._label_loss), donate_argnums=(0, 1))
        self._text_step = jax.jit(self._step(self._text_and_label_loss), donate_argnums=(0, 1))
        self._label_logits = jax.jit(lambda *arguments: self._label_logits_of(*arguments)[0])
        self._text_loss = jax.jit(self._text_loss_of)

    def _hidden(self, trainable, non_trainable, tokens):
        hidden, _ = self._backbone.stateless_call(
            trainable, non_trainable, {"token_ids": tokens, "padding_mask": tokens != 0}
        )
        return hidden

    def _label_logits_of(self, trainable, non_trainable, tokens, label_at):
        import jax.numpy as jnp

        hidden = self._hidden(trainable, non_trainable, tokens)
        at_label = hidden[jnp.arange(hidden.shape[0]), label_at]
        label_embeddings = jnp.take(non_trainable[self._embedding_index], self._label_ids, axis=0)
        return (at_label @ label_embeddings.T).astype("float32"), hidden

    def _label_loss(self, trainable, non_trainable, batch: dict):
        logits, _ = self._label_logits_of(trainable, non_trainable, batch["tokens"], batch["label_at"])
        return self._label_loss_of(logits, batch)

    def _label_loss_of(self, logits, batch: dict):
        import jax
        import jax.numpy as jnp

        picked = jnp.take_along_axis(jax.nn.log_softmax(logits), batch["labels"][:, None], axis=1)[:, 0]
        weights = batch["label_mask"] * jnp.take(self._class_weights, batch["labels"])
        return -(weights * picked).sum() / jnp.maximum(batch["label_mask"].sum(), 1.0)

    def _text_loss_of(self, trainable, non_trainable, batch: dict, hidden=None):
        import jax
        import jax.numpy as jnp

        if hidden is None:
            hidden = self._hidden(trainable, non_trainable, batch["tokens"])
        at_targets = jnp.take_along_axis(hidden, batch["positions"][:, :, None], axis=1)
        candidates = jnp.take(non_trainable[self._embedding_index], self._vocabulary, axis=0)
        logits = (at_targets @ candidates.T).astype("float32")
        # Every target token is in the vocabulary, which is sorted: its index there is its class.
        classes = jnp.searchsorted(self._vocabulary, batch["targets"])
        picked = jnp.take_along_axis(jax.nn.log_softmax(logits), classes[:, :, None], axis=2)[:, :, 0]
        return -(batch["target_mask"] * picked).sum() / jnp.maximum(batch["target_mask"].sum(), 1.0)

    def _text_and_label_loss(self, trainable, non_trainable, batch: dict):
        logits, hidden = self._label_logits_of(trainable, non_trainable, batch["tokens"], batch["label_at"])
        return self._label_loss_of(logits, batch) + self._text_loss_of(trainable, non_trainable, batch, hidden)

    def _step(self, loss_of):
        import jax

        def step(trainable, optimizer_state, non_trainable, batch):
            loss, grads = jax.value_and_grad(loss_of)(trainable, non_trainable, batch)
            trainable, optimizer_state = self.optimizer.stateless_apply(optimizer_state, grads, trainable)
            return trainable, optimizer_state, loss

        return step

    def train(self, batch: Batch) -> float:
        """One step on the batch; its loss."""
        step = self._text_step if batch.targets is not None else self._label_step
        self.trainable, self._optimizer_state, loss = step(
            self.trainable, self._optimizer_state, self._non_trainable, _arrays(batch)
        )
        return float(loss)

    def label_logits(self, sequences: list[Sequence], batch_size: int, max_tokens: int) -> np.ndarray:
        """The label logits of every sequence, shape (sequences, labels), in their order."""
        logits = np.zeros((len(sequences), len(self._label_ids)), dtype="float32")
        for batch in batches(sequences, batch_size, max_tokens):
            scores = self._label_logits(self.trainable, self._non_trainable, batch.tokens, batch.label_at)
            logits[batch.rows] = np.asarray(scores)[: len(batch.rows)]
        return logits

    def text_loss(self, sequences: list[Sequence], batch_size: int, max_tokens: int) -> float:
        """The mean text loss per target token of the sequences that have text."""
        losses, weights = [], []
        for batch in batches([s for s in sequences if s.text_from], batch_size, max_tokens):
            losses.append(float(self._text_loss(self.trainable, self._non_trainable, _arrays(batch))))
            weights.append(float(batch.target_mask.sum()))
        return float(np.average(losses, weights=weights)) if losses else float("nan")

    def store(self) -> None:
        """Copies the trained LoRA weights into the backbone's variables, for saving (the training step donates
        its buffers, so the variables get copies)."""
        for variable, value in zip(self._backbone.trainable_variables, self.trainable):
            variable.assign(np.asarray(value))


def _arrays(batch: Batch) -> dict:
    arrays = {
        "tokens": batch.tokens, "label_at": batch.label_at, "labels": batch.labels, "label_mask": batch.label_mask,
    }
    if batch.targets is not None:
        arrays |= {"positions": batch.positions, "targets": batch.targets, "target_mask": batch.target_mask}
    return arrays
