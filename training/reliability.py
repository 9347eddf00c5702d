"""What the confidence is worth: accuracy per confidence bin, the expected calibration error, and the cascade's
trade-off (how many of the least confident chats a person must take so that the rest reach a macro recall)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

# Equal-width bins over [0, 1], the usual reliability diagram; the best of three labels is never under 1/3, so
# the lowest bins stay empty and are left out.
BINS = 10
TARGET_MACRO_RECALL = 0.80
# Shares of the least confident chats the table reports the rest's macro recall for, besides the target's.
REPORTED_SHARES = (0.1, 0.2, 0.3)


class ReliabilityBin(BaseModel):
    """The rows whose confidence lies in [low, high)."""

    model_config = ConfigDict(frozen=True)

    low: float
    high: float
    rows: int
    mean_confidence: float
    accuracy: float


class Reliability(BaseModel):
    """How well a model's confidence predicts that its label is right, on labeled rows."""

    model_config = ConfigDict(frozen=True)

    model_id: str
    rows: int = Field(description="rows with a confidence (rows that ended in error have none)")
    accuracy: float
    bins: list[ReliabilityBin]
    expected_calibration_error: float = Field(
        description="the bins' |accuracy - mean confidence|, weighted by their share of the rows"
    )
    target_macro_recall: float
    threshold: float | None = Field(
        description="the lowest confidence threshold at which the chats at or over it reach the target macro "
        "recall; null when none does"
    )
    share_under_threshold: float | None = Field(
        description="the share of the chats under the threshold: what a person (or a bigger model) must look at"
    )
    curve: list[tuple[float, float, float]] = Field(
        description="(threshold, share under it, macro recall of the rest) for each distinct confidence"
    )


def _macro_recall(labels: np.ndarray, predicted: np.ndarray) -> float:
    """Recall averaged over the three classes; a class with no rows left counts 0 (a cascade must not lose one)."""
    recalls = [(predicted[labels == c] == c).mean() if (labels == c).any() else 0.0 for c in (-1, 0, 1)]
    return float(np.mean(recalls))


def reliability(model_id: str, rows: list[tuple[int, int, float]]) -> Reliability:
    """The report for `(label, predicted, confidence)` rows."""
    labels, predicted, confidence = (np.asarray(column) for column in zip(*rows))
    correct = labels == predicted
    # The last bin is closed, so that a confidence of exactly 1 counts.
    index = np.minimum(np.floor(confidence * BINS).astype(int), BINS - 1)
    bins = [
        ReliabilityBin(
            low=b / BINS, high=(b + 1) / BINS, rows=int((index == b).sum()),
            mean_confidence=float(confidence[index == b].mean()), accuracy=float(correct[index == b].mean()),
        )
        for b in range(BINS) if (index == b).any()
    ]
    ece = sum(entry.rows / len(rows) * abs(entry.accuracy - entry.mean_confidence) for entry in bins)
    curve = []
    for threshold in np.unique(confidence):
        kept = confidence >= threshold
        curve.append((float(threshold), float(1 - kept.mean()), _macro_recall(labels[kept], predicted[kept])))
    reached = [(threshold, share) for threshold, share, recall in curve if recall >= TARGET_MACRO_RECALL]
    threshold, share = reached[0] if reached else (None, None)
    return Reliability(
        model_id=model_id, rows=len(rows), accuracy=float(correct.mean()), bins=bins,
        expected_calibration_error=float(ece), target_macro_recall=TARGET_MACRO_RECALL, threshold=threshold,
        share_under_threshold=share, curve=curve,
    )


def table(report: Reliability) -> str:
    """The reliability table and the trade-off, as Markdown."""
    lines = [
        f"Reliability of {report.model_id} on {report.rows} rows (accuracy {report.accuracy:.3f}):",
        "",
        "| confidence | rows | mean confidence | accuracy | gap |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {entry.low:.1f} to {entry.high:.1f} | {entry.rows} | {entry.mean_confidence:.3f} "
            f"| {entry.accuracy:.3f} | {entry.accuracy - entry.mean_confidence:+.3f} |"
            for entry in report.bins
        ),
        "",
        f"Expected calibration error: {report.expected_calibration_error:.3f}.",
    ]
    if report.threshold is None:
        lines.append(f"No threshold brings the rest's macro recall to {report.target_macro_recall:.2f}.")
    elif report.share_under_threshold == 0:
        lines.append(f"Cascade: all the chats reach a macro recall of {report.target_macro_recall:.2f} as they are.")
    else:
        lines.append(
            f"Cascade: under a confidence of {report.threshold:.3f} go {report.share_under_threshold:.1%} of the "
            f"chats; the rest reach a macro recall of {report.target_macro_recall:.2f}."
        )
    recalls = [
        f"{share:.0%}: {next(recall for _, under, recall in report.curve if under >= share):.3f}"
        for share in REPORTED_SHARES if report.curve[-1][1] >= share
    ]
    lines.append(f"Macro recall of the rest, all chats kept: {report.curve[0][2]:.3f}; the least confident deferred, "
                 + ", ".join(recalls) + ".")
    return "\n".join(lines)


def plot(report: Reliability, path: Path) -> None:
    """A PNG: the reliability diagram beside the cascade's curve (share deferred against the rest's macro recall)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on workers or CI
    from matplotlib import pyplot

    figure, (left, right) = pyplot.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    width = 1.0 / BINS
    left.bar([entry.low for entry in report.bins], [entry.accuracy for entry in report.bins], width=width,
             align="edge", edgecolor="#243b53", color="#9fb3c8", label="accuracy")
    left.plot([0, 1], [0, 1], linestyle="--", color="#d64545", label="perfect calibration")
    for entry in report.bins:
        left.annotate(str(entry.rows), (entry.low + width / 2, entry.accuracy), ha="center", va="bottom", fontsize=8)
    left.set(xlim=(0, 1), ylim=(0, 1.05), xlabel="confidence", ylabel="accuracy",
             title=f"Reliability (ECE {report.expected_calibration_error:.3f}, {report.rows} rows)")
    left.legend(loc="upper left")
    shares = [share for _, share, _ in report.curve]
    right.plot(shares, [recall for _, _, recall in report.curve], color="#243b53")
    right.axhline(report.target_macro_recall, linestyle="--", color="#d64545",
                  label=f"macro recall {report.target_macro_recall:.2f}")
    if report.share_under_threshold is not None:
        right.axvline(report.share_under_threshold, linestyle=":", color="#627d98",
                      label=f"{report.share_under_threshold:.1%} to a person (< {report.threshold:.2f})")
    right.set(xlim=(0, 1), ylim=(0, 1.05), xlabel="share of chats under the threshold (to a person)",
              ylabel="macro recall of the rest", title="Cascade trade-off")
    right.legend(loc="lower right")
    figure.suptitle(report.model_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    pyplot.close(figure)


def write(report: Reliability, prefix: str) -> list[Path]:
    """`<prefix>-<model id>.md`, `.json` and `.png`; returns their paths."""
    base = Path(f"{prefix}-{report.model_id}")
    paths = [base.with_suffix(".md"), base.with_suffix(".json"), base.with_suffix(".png")]
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    paths[0].write_text(table(report) + "\n", encoding="utf-8")
    paths[1].write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    plot(report, paths[2])
    return paths
