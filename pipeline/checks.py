"""Which positive and neutral chats also go to a person as sentiment checks: the doubtful and a stable sample."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.contracts import CheckReason
from pipeline.shares import stable_share

# Salts the sample's hash: unsalted, the sample would be the first variant's chats (pipeline.variants).
SAMPLE_SALT = b"sentiment-check\x00"


@dataclass(frozen=True)
class CheckPolicy:
    """`below_confidence`: a chat whose label is less likely than this is checked; `sample_rate`: the share of all
    chats checked regardless (a negative chat's draft is reviewed anyway, so only positive and neutral ones go)."""

    below_confidence: float | None = None
    sample_rate: float = 0.0

    def reason(self, chat_id: str, confidence: float | None) -> CheckReason | None:
        """Why this chat is checked, or None. Low confidence comes first; a chat without one (generate mode)
        can only be sampled."""
        if self.below_confidence is not None and confidence is not None and confidence < self.below_confidence:
            return CheckReason.LOW_CONFIDENCE
        if stable_share(chat_id, SAMPLE_SALT) < self.sample_rate:
            return CheckReason.SAMPLED
        return None


# No chat is checked: the jobs' default.
NO_CHECKS = CheckPolicy()
