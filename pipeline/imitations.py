"""Chats that imitate the model's answer (prompt injection): finding them, and cutting them into the parts the
triage step reads apart."""

from __future__ import annotations

import re

# A line in the form of the model's answer: a label or summary line, English or Korean, or a JSON reply with a
# sentiment. Customers do not write these; prompt injection does, and the model can follow it (docs: Prompt
# injection, with how many chats it finds).
# Korean text often has a full-width colon (U+FF1A).
ANSWER_LINE = re.compile(
    r'^\W*(sentiment|label|summary|감정|라벨|요약)\s*[:\uff1a]|"sentiment"\s*:', re.IGNORECASE | re.MULTILINE
)
# A line with no word on it: blank, or a separator such as "---".
_BREAK = re.compile(r"^\W*$")


def imitates_answer(chat_message: str) -> bool:
    """Whether the chat holds a line that imitates the model's answer (`Sentiment: positive`, `감정: 긍정`, …)."""
    return ANSWER_LINE.search(chat_message) is not None


def parts(chat_message: str) -> list[str]:
    """The stretches of the chat between the lines that imitate the answer and the blank or separator lines,
    which are dropped."""
    stretches: list[list[str]] = [[]]
    for line in chat_message.split("\n"):
        if ANSWER_LINE.search(line) or _BREAK.match(line):
            stretches.append([])
        else:
            stretches[-1].append(line)
    return ["\n".join(lines) for lines in stretches if lines]


def readings(chat_message: str) -> list[str]:
    """What the triage step reads of a chat: the chat itself and, when it imitates the answer, each of its parts
    alone. A forged example then cannot carry the customer's own words with it: the model reads them on their
    own too, and the most negative reading wins (`GemmaModelHandler` views)."""
    if not imitates_answer(chat_message):
        return [chat_message]
    return [chat_message, *(part for part in parts(chat_message) if part != chat_message)]
