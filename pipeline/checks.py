"""Which positive and neutral chats also go to a person as sentiment checks: the doubtful and a stable sample."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pipeline.contracts import CheckReason

# Salts the sample's hash, so that it falls independently of any other split made by chat id.
_SAMPLE_SALT = b"sentiment-check\x00"


def stable_share(chat_id: str, salt: bytes = _SAMPLE_SALT) -> float:
    """A number in [0, 1) fixed by the chat id: the same on every run, worker and replay (Python's hash() is
    salted per process)."""
    digest = hashlib.sha256(salt + chat_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


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
        if stable_share(chat_id) < self.sample_rate:
            return CheckReason.SAMPLED
        return None


# No chat is checked: the jobs' default.
NO_CHECKS = CheckPolicy()
