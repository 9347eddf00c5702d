"""Acceptance per apology variant, model and prompt versions: how agents decide each variant's drafts, with 95%
Wilson intervals so that nobody over-reads ten drafts."""

from __future__ import annotations

import statistics
from collections import defaultdict

from scipy.stats import binomtest
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.contracts import RejectReason, ReviewDecision
from review.models import Decision, Draft
from review.schemas import Rate, VariantStats

CONFIDENCE = 0.95


def rate(count: int, total: int) -> Rate:
    """`count` of `total`, with its Wilson score interval (none when nothing was decided)."""
    if total == 0:
        return Rate(count=0, total=0, share=None, low=None, high=None)
    interval = binomtest(count, total).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return Rate(count=count, total=total, share=count / total, low=interval.low, high=interval.high)


def variant_stats(session: Session) -> list[VariantStats]:
    """One entry per (variant, model id, triage prompt version, apology prompt version) with decisions, most decided
    first."""
    groups: dict[tuple[str, str, str, str], list[Decision]] = defaultdict(list)
    query = select(
        Draft.variant, Draft.model_id, Draft.triage_prompt_version, Draft.apology_prompt_version, Decision
    ).join(Decision)
    for variant, model_id, triage, apology, decision in session.execute(query):
        groups[(variant, model_id, triage, apology)].append(decision)
    stats = [_stats(key, decisions) for key, decisions in groups.items()]
    return sorted(
        stats, key=lambda entry: (-entry.decided, entry.variant, entry.model_id, entry.apology_prompt_version)
    )


def _stats(key: tuple[str, str, str, str], decisions: list[Decision]) -> VariantStats:
    total = len(decisions)
    kinds = [decision.decision for decision in decisions]
    edits = [d.normalized_edit_distance for d in decisions if d.decision == ReviewDecision.EDIT.value]
    return VariantStats(
        variant=key[0], model_id=key[1], triage_prompt_version=key[2], apology_prompt_version=key[3], decided=total,
        accepted=rate(kinds.count(ReviewDecision.APPROVE.value), total),
        edited=rate(len(edits), total),
        mean_normalized_edit_distance=statistics.fmean(edits) if edits else None,
        rejected=rate(kinds.count(ReviewDecision.REJECT.value), total),
        rejected_by_reason={
            reason: rate(sum(d.reason == reason.value for d in decisions), total) for reason in RejectReason
        },
        median_seconds_to_decision=statistics.median(d.seconds_waited for d in decisions),
    )
