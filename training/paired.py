"""Two models' labels for the same rows, compared row by row: is one model's macro recall above the other's by
more than the rows' luck?

`training.evaluate --compare` applies it to each compared model against the first.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import numpy as np
from scipy.stats import binomtest, bootstrap

from pipeline.contracts import PairedDifference

CONFIDENCE = 0.95
RESAMPLES = 10_000
# Resamples drawn at once: each is a copy of every row, so all 10,000 at once would cost memory in proportion to the
# file (650 MB for 2,000 rows).
BATCH = 250
# A row without a valid label counts as wrong for every class, as in `training.evaluate.score`.
NO_LABEL = 9

Predicted = dict[str, int | None]


def paired_difference(
    labels: dict[str, int], classes: Iterable[int], first: tuple[str, Predicted], other: tuple[str, Predicted]
) -> PairedDifference:
    """`other`'s macro recall over `classes` minus `first`'s, each a (model id, label by row id) pair, with a paired
    bootstrap interval (the same rows resampled for both) and an exact McNemar test on the rows only one of them
    gets right."""
    ids = sorted(labels)
    truth = np.asarray([labels[i] for i in ids])
    ours, theirs = (np.asarray([NO_LABEL if p.get(i) is None else p[i] for i in ids]) for _, p in (first, other))
    difference = functools.partial(_difference, classes=tuple(classes))
    interval = bootstrap(
        (truth, ours, theirs), difference, paired=True, vectorized=True, n_resamples=RESAMPLES, batch=BATCH,
        confidence_level=CONFIDENCE, method="percentile", rng=np.random.default_rng(0),
    ).confidence_interval
    only_first = int(((ours == truth) & (theirs != truth)).sum())
    only_other = int(((theirs == truth) & (ours != truth)).sum())
    discordant = only_first + only_other
    return PairedDifference(
        model_id=other[0], against=first[0],
        macro_recall_difference=round(float(difference(truth, ours, theirs)), 4),
        low=round(float(interval.low), 4), high=round(float(interval.high), 4),
        only_this_right=only_other, only_first_right=only_first,
        mcnemar_p=binomtest(only_other, discordant).pvalue if discordant else 1.0,
    )


def _difference(
    truth: np.ndarray, first: np.ndarray, other: np.ndarray, classes: tuple[int, ...], axis: int = -1
) -> np.ndarray:
    return _macro_recall(truth, other, classes, axis) - _macro_recall(truth, first, classes, axis)


def _macro_recall(truth: np.ndarray, predicted: np.ndarray, classes: tuple[int, ...], axis: int) -> np.ndarray:
    # A class without rows counts as recall 0, as in `training.evaluate.score`.
    recalls = [
        ((truth == label) & (predicted == label)).sum(axis) / np.maximum((truth == label).sum(axis), 1)
        for label in classes
    ]
    return np.mean(recalls, axis=0)
