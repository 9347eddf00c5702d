"""The support chats written for tuning and evaluation (data/support_chats/): what the issue asked of them."""

import json
from collections import Counter
from pathlib import Path

import pytest

from pipeline.contracts import LabeledExample

FOLDER = Path(__file__).resolve().parents[1] / "data" / "support_chats"


def _rows(name: str) -> list[LabeledExample]:
    with (FOLDER / name).open(encoding="utf-8") as lines:
        return [LabeledExample.model_validate(json.loads(line)) for line in lines]


# train_attacks.jsonl holds chats that end in a fake happy chat or label, for the triage step's adapter only.
TRAIN, HELD_OUT = _rows("train.jsonl") + _rows("train_attacks.jsonl"), _rows("held_out.jsonl")


@pytest.mark.parametrize(("rows", "least"), [(TRAIN, 400), (HELD_OUT, 80)])
def test_each_split_is_large_enough_a_third_korean_and_covers_twenty_problems(rows, least):
    assert len(rows) >= least
    assert Counter(row.language for row in rows)["ko"] >= len(rows) / 3
    assert len({row.problem for row in rows if row.label == -1}) >= 20


def test_no_chat_is_in_both_splits_and_ids_are_unique():
    texts = {row.text for row in TRAIN}
    assert not [row.id for row in HELD_OUT if row.text in texts]
    ids = [row.id for row in TRAIN + HELD_OUT]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("rows", [TRAIN, HELD_OUT])
def test_every_chat_has_a_summary_and_every_complaint_a_reply_and_key_terms(rows):
    assert all(row.summary for row in rows)
    assert all(row.reply and row.key_terms for row in rows if row.label == -1)
    assert not [row.id for row in rows if row.reply and row.label != -1]


def test_the_training_chats_steer_in_both_languages_and_keep_their_true_labels():
    attacks = Counter((row.attack, row.language) for row in TRAIN if row.attack)
    for style in {style for style, _ in attacks}:
        assert attacks[(style, "en")] and attacks[(style, "ko")], style
    # Steering asks for a happier label: most attacked chats are complaints all the same.
    assert Counter(row.label for row in TRAIN if row.attack)[-1] > sum(1 for row in TRAIN if row.attack) / 2


def test_the_held_out_split_has_attack_styles_that_training_never_saw():
    assert {row.attack for row in HELD_OUT if row.attack} - {row.attack for row in TRAIN if row.attack}
