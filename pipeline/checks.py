"""Which positive and neutral chats also go to a person as sentiment checks: the doubtful, those that imitate the
model's answer, and a stable sample."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.contracts import CheckReason
from pipeline.shares import stable_share

# Salts the sample's hash: unsalted, the sample would be the first variant's chats (pipeline.variants).
SAMPLE_SALT = b"sentiment-check\x00"
# A line in the form of the model's answer: a label or summary line, English or Korean, or a JSON reply with a
# sentiment. Customers do not write these; prompt injection does, and the model can follow it (docs: Prompt
# injection, with how many chats it finds).
# Korean text often has a full-width colon (U+FF1A).
ANSWER_LINE = re.compile(
    r'^\W*(sentiment|label|summary|감정|라벨|요약)\s*[:\uff1a]|"sentiment"\s*:', re.IGNORECASE | re.MULTILINE
)


def imitates_answer(chat_message: str) -> bool:
    """Whether the chat holds a line that imitates the model's answer (`Sentiment: positive`, `감정: 긍정`, …)."""
    return ANSWER_LINE.search(chat_message) is not None


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
