"""Choosing a label by likelihood: the options, the model's prior for them, and what is generated after."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from handlers.generator import KerasHubGenerator


@dataclass(frozen=True)
class Choice:
    """Makes the handler pick one of `options` by likelihood before it generates.

    For each prompt, the option the model finds most likely as the next token wins (its log-probability less
    its mean on the `baseline_prompts`, inputs that carry no information); the model then continues
    `prompt + option + then`, and the reply is that continuation, with the option in `Generation.choice`.
    Every option must be one token of the model's vocabulary.

    With `continue_head` = (head, replacement), a prompt that begins with `head` is continued with `replacement`
    in its place: the choice is read from a short prompt, the continuation written after a longer one.
    `offsets` (one per option, or none) are added to the options' scores: a tuned model's correction of its
    lean towards some labels, fitted on held-out rows. The order of `options` is their order of caution where a
    record is read several ways (`cautious`).
    """

    options: tuple[str, ...]
    then: str = ""
    baseline_prompts: tuple[str, ...] = ()
    continue_head: tuple[str, str] | None = None
    offsets: tuple[float, ...] = ()

    def prior(self, model: KerasHubGenerator, pad_to: int | None = None) -> np.ndarray:
        """What is subtracted from every prompt's option scores: the options' mean log-probability on the
        `baseline_prompts` (one pass; it does not depend on the chat), less the `offsets`."""
        mean = (
            model.next_token_logprobs(list(self.baseline_prompts), model.token_ids(self.options), pad_to=pad_to)
            .mean(axis=0)
            if self.baseline_prompts else np.zeros(len(self.options), dtype="float32")
        )
        return mean - np.asarray(self.offsets, dtype="float32") if self.offsets else mean

    def scores(
        self, model: KerasHubGenerator, prompts: list[str], prior: np.ndarray, *,
        pad_to: int | None = None, max_length: int | None = None,
    ) -> np.ndarray:
        """Each prompt's option scores relative to `prior` (see `prior`), shape (prompts, options): one scoring
        pass, padded as `KerasHubGenerator.next_token_logprobs` pads it. A prompt left unscored has -inf."""
        logprobs = model.next_token_logprobs(
            prompts, model.token_ids(self.options), pad_to=pad_to, max_length=max_length
        )
        return logprobs - prior

    def chosen(self, scores: np.ndarray) -> list[str]:
        """The best option of each row of `scores`."""
        return [self.options[best] for best in scores.argmax(axis=1)]

    def cautious(self, scores: np.ndarray, counts: Sequence[int]) -> list[int]:
        """For records whose views are `counts[i]` consecutive rows of `scores`: each record's view whose best option
        comes first in `options`; of those, the one whose pick is likeliest (`confidence`), then the earliest. With
        the options in order of caution (the most negative label first), that is the most cautious reading of each
        record, in the words the model reads most clearly. A view left unscored comes last."""
        scored = np.isfinite(scores.max(axis=1))
        rank = np.where(scored, scores.argmax(axis=1), len(self.options))
        shares = np.nan_to_num(np.asarray(confidence(scores), dtype="float64"))
        starts = np.cumsum([0, *counts])
        return [
            min(range(count), key=lambda view: (rank[start + view], -shares[start + view], view))
            for start, count in zip(starts, counts)
        ]

    def pick(
        self, model: KerasHubGenerator, prompts: list[str], prior: np.ndarray, *,
        pad_to: int | None = None, max_length: int | None = None,
    ) -> list[str]:
        """The option each prompt's likeliest next token is, relative to `prior`."""
        return self.chosen(self.scores(model, prompts, prior, pad_to=pad_to, max_length=max_length))

    def continuation(self, prompt: str, option: str) -> str:
        """What the model continues once `option` is chosen for `prompt`."""
        if self.continue_head and prompt.startswith(self.continue_head[0]):
            prompt = self.continue_head[1] + prompt[len(self.continue_head[0]) :]
        return prompt + option + self.then


def confidence(scores: np.ndarray) -> list[float | None]:
    """The best option's probability among the options, per row of `scores` (a softmax over the calibrated,
    offset scores: the label's share of the model's belief in the three labels); None for a row not scored."""
    best = scores.max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        shares = np.exp(scores - best).sum(axis=1)
    return [float(1.0 / share) if np.isfinite(share) else None for share in shares]
