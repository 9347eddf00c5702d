"""Which positive and neutral chats also go to a person as sentiment checks: the doubtful, those that imitate the
model's answer, and a stable sample."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.contracts import CheckReason
from pipeline.imitations import imitates_answer
from pipeline.shares import stable_share

# Salts the sample's hash: unsalted, the sample would be the first variant's chats (pipeline.variants).
SAMPLE_SALT = b"sentiment-check\x00"


@dataclass(frozen=True)
class CheckPolicy:
    """`below_confidence`: a chat whose label is less likely than this is checked; `imitations`: a chat that
    imitates the model's answer is checked; `sample_rate`: the share of all chats checked regardless (a negative
    chat's draft is reviewed anyway, so only positive and neutral ones go)."""

    below_confidence: float | None = None
    sample_rate: float = 0.0
    imitations: bool = False

    def reason(self, chat_id: str, confidence: float | None, chat_message: str) -> CheckReason | None:
        """Why this chat is checked, or None. An imitated answer comes first, then low confidence; a chat without
        one (generate mode) can only be sampled."""
        if self.imitations and imitates_answer(chat_message):
            return CheckReason.IMITATES_ANSWER
        if self.below_confidence is not None and confidence is not None and confidence < self.below_confidence:
            return CheckReason.LOW_CONFIDENCE
        if stable_share(chat_id, SAMPLE_SALT) < self.sample_rate:
            return CheckReason.SAMPLED
        return None


# No chat is checked: the jobs' default.
NO_CHECKS = CheckPolicy()
