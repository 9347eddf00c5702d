"""`python -m review.export`: what agents decided, as data to evaluate and tune the model with.

    python -m review.export --output out/reviewed.jsonl [--pairs_output out/reviewed-pairs.jsonl]

`--output` gets one labeled row per decided chat whose sentiment the agent settled, `{"id", "text", "label"}`,
which `--labeled` of the evaluation and of the tuning read as it is: the agent's corrected sentiment, else -1
(negative, as the model said) when the agent approved or edited the reply or rejected only the draft. A chat
rejected as not a complaint, or for another reason, with no sentiment given, has no label and is left out. Each
sentiment check with a verdict is a row too, with the agent's sentiment (confirmed or corrected). A chat settled
twice (a check corrected to negative, then its draft decided) has one row: the later label.
`--pairs_output` gets each approved chat with the reply that was sent, for tuning the apology step.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, CliApp, SettingsConfigDict
from sqlalchemy import select

from pipeline.contracts import LabeledExample, RejectReason, ReplyPair, ReviewDecision
from review.config import DEFAULT_DATABASE_URL
from review.db import make_engine, session_factory, upgrade
from review.models import Check, Decision, Draft

_LOGGER = logging.getLogger("review.export")
# Decisions that confirm the model's negative sentiment without saying so.
_CONFIRMS_NEGATIVE = {ReviewDecision.APPROVE.value, ReviewDecision.EDIT.value}


class ExportSettings(BaseSettings):
    """Where to read the decisions and where to write them."""

    model_config = SettingsConfigDict(env_prefix="REVIEW_", cli_prog_name="python -m review.export", frozen=True)

    database_url: str = Field(DEFAULT_DATABASE_URL, description="the desk's database (as for python -m review)")
    output: Path = Field(description="labeled rows {id, text, label} (JSON Lines)")
    pairs_output: Path | None = Field(
        None, description="(chat, reply) pairs (default: OUTPUT with -pairs before .jsonl)"
    )


def label(draft: Draft, decision: Decision) -> int | None:
    """The sentiment the agent settled for the chat, or None when the decision does not say."""
    if decision.corrected_sentiment is not None:
        return decision.corrected_sentiment
    if decision.decision in _CONFIRMS_NEGATIVE or decision.reason == RejectReason.DRAFT_UNUSABLE.value:
        return -1
    return None


def export(sessions, output: Path, pairs_output: Path) -> tuple[int, int]:
    """Writes both files from every decision and check verdict, oldest first; returns (labeled rows, pairs)."""
    labeled: dict[str, tuple] = {}
    pairs = 0
    output.parent.mkdir(parents=True, exist_ok=True)
    pairs_output.parent.mkdir(parents=True, exist_ok=True)
    with sessions() as session, pairs_output.open("w", encoding="utf-8") as replies:
        for draft, decision in session.execute(select(Draft, Decision).join(Decision).order_by(Decision.decided_at)):
            if (sentiment := label(draft, decision)) is not None:
                labeled[draft.chat_id] = (decision.decided_at, draft.chat_message, sentiment)
            if decision.final_text is not None:
                pair = ReplyPair(
                    id=draft.chat_id, chat=draft.chat_message, reply=decision.final_text,
                    edited=decision.decision == ReviewDecision.EDIT.value, model_id=draft.model_id,
                    apology_prompt_version=draft.apology_prompt_version, variant=draft.variant,
                )
                replies.write(pair.model_dump_json() + "\n")
                pairs += 1
        for check in session.scalars(select(Check).where(Check.verdict.is_not(None))):
            if check.chat_id not in labeled or labeled[check.chat_id][0] < check.decided_at:
                labeled[check.chat_id] = (check.decided_at, check.chat_message, check.verdict)
    rows = sorted(labeled.items(), key=lambda item: item[1][0])
    with output.open("w", encoding="utf-8") as lines:
        for chat_id, (_decided_at, text, sentiment) in rows:
            example = LabeledExample(id=chat_id, text=text, label=sentiment)
            # Only the three fields: the contract's optional references stay for data sets that have them.
            lines.write(example.model_dump_json(include={"id", "text", "label"}) + "\n")
    return len(rows), pairs


def main(argv: list[str] | None = None) -> int:
    settings = CliApp.run(ExportSettings, cli_args=sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    pairs_output = settings.pairs_output or settings.output.with_name(f"{settings.output.stem}-pairs.jsonl")
    engine = make_engine(settings.database_url)
    upgrade(engine)
    labeled, pairs = export(session_factory(engine), settings.output, pairs_output)
    _LOGGER.info(
        "wrote %d labeled rows to %s and %d (chat, reply) pairs to %s", labeled, settings.output, pairs, pairs_output
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
