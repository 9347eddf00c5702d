"""A number fixed by a chat id, for every split of the chats that must not change between runs."""

from __future__ import annotations

import hashlib


def stable_share(chat_id: str, salt: bytes = b"") -> float:
    """A number in [0, 1) fixed by the chat id (and `salt`): the same in every process, run, redelivery and replay.

    SHA-256 of the id, not Python's `hash()`, which is salted per process. Two splits that must fall independently
    (the apology variants, the sample of sentiment checks) use different salts.
    """
    digest = hashlib.sha256(salt + chat_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
