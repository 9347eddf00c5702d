"""The JSON API's bodies: what a helpdesk sends and reads. The records the desk sends on are in pipeline.contracts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictStr, StringConstraints, model_validator

from pipeline.contracts import MAX_DRAFT_CHARS, CheckReason, RejectReason, ReviewDecision, Sentiment

Text = Annotated[StrictStr, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_DRAFT_CHARS)]
Name = Annotated[StrictStr, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class DecisionRequest(BaseModel):
    """`POST /api/drafts/{chat_id}/decision`: approve as is, edit then approve, or reject with a reason."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    decision: ReviewDecision
    text: Text | None = Field(None, description="the edited reply (edit only)")
    reason: RejectReason | None = Field(None, description="why it was rejected (reject only)")
    note: Annotated[StrictStr, StringConstraints(strip_whitespace=True, max_length=2000)] | None = Field(
        None, description="a few words; required with reason `other`"
    )
    sentiment: Sentiment | None = Field(None, description="the customer's sentiment, when the model got it wrong")
    reviewer: Name | None = Field(None, description="the agent's name (local desk only; behind IAP it is the user)")

    @model_validator(mode="after")
    def _fields_fit_the_decision(self) -> DecisionRequest:
        if self.decision is ReviewDecision.EDIT and self.text is None:
            raise ValueError("an edit needs the edited text")
        if self.decision is not ReviewDecision.EDIT and self.text is not None:
            raise ValueError("text is for edits only: approve sends the draft as it is")
        if self.decision is ReviewDecision.REJECT and self.reason is None:
            raise ValueError("a rejection needs a reason")
        if self.decision is not ReviewDecision.REJECT and self.reason is not None:
            raise ValueError("a reason is for rejections only")
        if self.reason is RejectReason.OTHER and not self.note:
            raise ValueError("reason `other` needs a note")
        if self.reason is RejectReason.WRONG_SENTIMENT and self.sentiment is None:
            raise ValueError("reason `wrong_sentiment` needs the right sentiment")
        return self


class CheckVerdict(BaseModel):
    """`POST /api/checks/{chat_id}/verdict`: the customer's sentiment as the agent reads the chat."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sentiment: Sentiment = Field(description="-1, 0 or 1: the model's label to confirm it, another to correct it")
    reviewer: Name | None = Field(None, description="the agent's name (local desk only; behind IAP it is the user)")


class CheckOut(BaseModel):
    """A sentiment check, with its verdict once there is one."""

    model_config = ConfigDict(from_attributes=True)

    chat_id: str
    user_id: str
    chat_message: str
    summary: str
    sentiment: int = Field(description="the model's sentiment")
    confidence: float | None = Field(description="the model's probability for it; null in generate mode")
    reason: CheckReason
    model_id: str
    prompt_version: str
    processed_at: datetime
    received_at: datetime
    verdict: int | None = Field(description="the agent's sentiment; null while the check is open")
    reviewer: str | None
    decided_at: datetime | None


class DecisionOut(BaseModel):
    """A decision as stored."""

    model_config = ConfigDict(from_attributes=True)

    decision: ReviewDecision
    final_text: str | None
    reason: RejectReason | None
    note: str | None
    corrected_sentiment: int | None
    reviewer: str
    decided_at: datetime
    seconds_waited: float
    edit_distance: int | None
    normalized_edit_distance: float | None


class DraftOut(BaseModel):
    """A draft with its chat, and its decision once there is one."""

    model_config = ConfigDict(from_attributes=True)

    chat_id: str
    user_id: str
    chat_message: str
    summary: str
    sentiment: int = Field(-1, description="the model's sentiment: every draft is for a negative chat")
    draft_reply: str
    model_id: str
    triage_prompt_version: str
    apology_prompt_version: str
    variant: str
    processed_at: datetime
    received_at: datetime
    claimed_by: str | None
    claimed_until: datetime | None
    decision: DecisionOut | None


class Rate(BaseModel):
    """A share of the decided drafts, with its 95% Wilson interval."""

    count: int
    total: int
    share: float | None
    low: float | None
    high: float | None


class VariantStats(BaseModel):
    """The decisions on one apology variant, model and prompt versions."""

    variant: str
    model_id: str
    triage_prompt_version: str
    apology_prompt_version: str
    decided: int
    accepted: Rate = Field(description="approved as drafted")
    edited: Rate = Field(description="edited, then approved")
    mean_normalized_edit_distance: float | None = Field(description="over the edited drafts")
    rejected: Rate
    rejected_by_reason: dict[RejectReason, Rate]
    median_seconds_to_decision: float | None


class AcceptanceTest(BaseModel):
    """Whether a variant's acceptance rate differs from the baseline's, and if not yet, what would show it."""

    variant: str
    baseline: str
    difference: float = Field(description="the variant's acceptance share minus the baseline's")
    test: str = Field(description="the test of the difference, by name")
    p_value: float
    alpha: float = Field(description="the level the p-value is held to (0.05, split among the comparisons)")
    significant: bool
    power_calculation: str = Field(description="how decisions_per_variant was computed, by name")
    decisions_per_variant: int | None = Field(
        description="decisions each of the two needs for the test to find a difference as large as the one seen, "
        "at 80% power; none when the two shares are equal"
    )
    more_decisions: int | None = Field(
        description="decisions still to make, for both together, to reach decisions_per_variant; 0 when significant"
    )


class VariantComparison(BaseModel):
    """`python -m review.report` and `GET /api/stats/comparison`: the variants side by side, each tested against
    the baseline (the most decided, unless one is named)."""

    variants: list[VariantStats]
    tests: list[AcceptanceTest]
