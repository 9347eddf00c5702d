"""The shape of every record that enters or leaves the pipeline: the one place it is defined."""

from __future__ import annotations

import base64
import enum
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictInt,
    StrictStr,
    StringConstraints,
    Tag,
    TypeAdapter,
    ValidationError,
)

# Size limits. A chat over MAX_CHAT_CHARS (after stripping whitespace) is rejected whole, as a dead letter that
# keeps the whole payload. A payload over MAX_PAYLOAD_BYTES is rejected before it is parsed (no valid chat comes
# near that size); its dead letter holds it as base64, whose size is predictable where JSON escaping can grow text
# sixfold, and holds it whole up to MAX_KEPT_PAYLOAD_BYTES: 7 MiB of base64 and the record's other fields stay
# under Pub/Sub's 10 MB message limit. Pub/Sub delivers at most 10 MB, so only a payload of 7 to 10 MB loses its tail.
MAX_CHAT_CHARS = 8_000
MAX_PAYLOAD_BYTES = 1_048_576
MAX_KEPT_PAYLOAD_BYTES = 7 * 1_048_576
MAX_SUMMARY_CHARS = 512
MAX_DRAFT_CHARS = 4_000
# The apology variant of every draft made without a variants file, and of those made before variants existed.
DEFAULT_VARIANT = "default"

# Ids arrive as JSON numbers or strings; bools and floats are rejected rather than coerced.
Identifier = StrictInt | Annotated[StrictStr, StringConstraints(strip_whitespace=True, min_length=1)]
Sentiment = Annotated[StrictInt, Field(ge=-1, le=1)]
# The chosen label's probability among the three, from the scoring pass (null where there is none: generate mode).
Confidence = Annotated[float, Field(ge=0, le=1)]


def utc_now() -> datetime:
    """The current time, timezone-aware, as every record stamps it."""
    return datetime.now(UTC)


def describe_validation_error(error: ValidationError) -> str:
    """A one-line reason naming each invalid field, for people reading dead letters."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in error.errors())


class Record(BaseModel):
    """Base of all contracts: immutable, and unknown fields are an error, not silently kept."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Correction(Record):
    """An agent's verdict that a chat the model called positive or neutral is a complaint: the review desk sends
    the chat back with it, and the pipeline drafts its apology without triaging it again."""

    sentiment: Literal[-1] = -1
    summary: str = Field(description="the model's summary from the first pass, for the apology prompt")
    reviewer: str


class ChatMessage(Record):
    """A finished support chat, as it arrives on Pub/Sub or in a JSON Lines file."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: Identifier
    user_id: Identifier
    chat_message: Annotated[
        StrictStr, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_CHAT_CHARS)
    ]
    message_id: str | None = Field(default=None, description="Pub/Sub message id, for tracing.")
    publish_time: datetime | None = Field(default=None, description="Pub/Sub publish time.")
    correction: Correction | None = Field(default=None, description="Set by the review desk only (Correction).")

    @property
    def chat_id(self) -> str:
        return str(self.id)

    def payload(self) -> str:
        """The message as the upstream system (or the desk, with its correction) sent it, without the Pub/Sub
        envelope."""
        return self.model_dump_json(include={"id", "user_id", "chat_message", "correction"}, exclude_none=True)


class ModelReply(Record):
    """The triage model's answer: what the reply parser accepts."""

    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)

    sentiment: Sentiment
    summary: Annotated[
        StrictStr, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_SUMMARY_CHARS)
    ]


class ApologyDraft(Record):
    """The apology model's answer: a draft a human agent reviews before sending."""

    text: Annotated[
        StrictStr, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_DRAFT_CHARS)
    ]


class TriageRow(Record):
    """A positive or neutral chat, as stored in BigQuery."""

    chat_id: str
    user_id: str
    sentiment: Annotated[int, Field(ge=0, le=1)]
    summary: str
    model_id: str
    prompt_version: str
    processed_at: datetime
    # Last, and optional: a table made before it gains the column at the job's start (pipeline.sinks).
    confidence: Confidence | None = Field(None, description="the sentiment's probability (Confidence)")


class NegativeChat(Record):
    """A chat triaged as negative, on its way to the apology model."""

    chat: ChatMessage
    reply: ModelReply
    model_id: str
    prompt_version: str
    confidence: Confidence | None = None


class ReviewMessage(Record):
    """An unhappy customer's chat with the drafted apology, for a human agent to review."""

    chat_id: str
    user_id: str
    chat_message: str
    summary: str
    draft_reply: str
    model_id: str
    triage_prompt_version: str
    apology_prompt_version: str
    variant: str = Field(DEFAULT_VARIANT, description="The apology variant that drafted the reply.")
    processed_at: datetime
    confidence: Confidence | None = Field(None, description="the negative label's probability (Confidence)")


class CheckReason(str, enum.Enum):
    """Why a positive or neutral chat went to an agent for a sentiment check."""

    LOW_CONFIDENCE = "low_confidence"  # under --check_below_confidence
    SAMPLED = "sampled"  # in the --check_sample_rate share
    IMITATES_ANSWER = "imitates_answer"  # holds a line in the form of the model's answer (--check_imitations)


class SentimentCheck(Record):
    """A positive or neutral chat for an agent to confirm or correct the label of: no draft. Its row is in
    BigQuery too; it reaches the review topic beside the review messages, told apart by `kind`."""

    kind: Literal["check"] = "check"
    chat_id: str
    user_id: str
    chat_message: str
    summary: str
    sentiment: Annotated[int, Field(ge=0, le=1)]
    confidence: Confidence | None
    reason: CheckReason
    model_id: str
    prompt_version: str
    processed_at: datetime


def _review_kind(value: Any) -> str:
    # Review messages came before checks and carry no kind.
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return kind or "apology"


# What the review topic carries: a review message (a draft to decide) or a sentiment check.
REVIEW_TOPIC_MESSAGE = TypeAdapter(
    Annotated[
        Annotated[ReviewMessage, Tag("apology")] | Annotated[SentimentCheck, Tag("check")], Discriminator(_review_kind)
    ]
)


class ReviewDecision(str, enum.Enum):
    """What an agent did with a draft."""

    APPROVE = "approve"  # sent as the model drafted it
    EDIT = "edit"  # edited by the agent, then sent
    REJECT = "reject"  # not sent


class RejectReason(str, enum.Enum):
    """Why an agent rejected a draft: a short list, so that rejections can be counted per reason."""

    WRONG_SENTIMENT = "wrong_sentiment"
    DRAFT_UNUSABLE = "draft_unusable"
    NOT_A_COMPLAINT = "not_a_complaint"
    OTHER = "other"  # with a note


class ReviewRow(Record):
    """An agent's decision on a draft, as the review desk stores it in BigQuery (one row per chat)."""

    chat_id: str
    user_id: str
    decision: ReviewDecision
    draft_text: str
    final_text: str | None = Field(description="The reply sent (the draft or the agent's edit); none when rejected.")
    reason: RejectReason | None
    note: str | None
    corrected_sentiment: Sentiment | None = Field(description="The sentiment the agent gave, when it was corrected.")
    reviewer: str
    decided_at: datetime
    seconds_waited: float = Field(description="From the draft's making (processed_at) to the decision.")
    model_id: str
    triage_prompt_version: str
    apology_prompt_version: str
    variant: str = Field(DEFAULT_VARIANT, description="The apology variant that drafted the reply.")
    edit_distance: int | None = Field(description="Levenshtein distance from draft to final text, in characters.")
    normalized_edit_distance: float | None = Field(description="edit_distance over the longer text's length, 0 to 1.")


class ApprovedReply(Record):
    """A reply an agent approved, on the replies topic, for whatever sends it to the customer."""

    chat_id: str
    user_id: str
    text: str
    edited: bool
    reviewer: str
    decided_at: datetime


class ReplyPair(Record):
    """A chat and the reply an agent approved for it, exported for tuning the apology step."""

    id: str
    chat: str
    reply: str
    edited: bool
    model_id: str
    apology_prompt_version: str
    variant: str = Field(DEFAULT_VARIANT, description="The apology variant that drafted the reply.")


class Stage(str, enum.Enum):
    """Where in the pipeline a record failed."""

    INPUT = "input"
    TRIAGE_INFERENCE = "triage_inference"
    TRIAGE_REPLY = "triage_reply"
    APOLOGY_INFERENCE = "apology_inference"
    APOLOGY_REPLY = "apology_reply"
    SINK = "sink"
    # The replay job was given a record that is not a dead letter.
    REPLAY_INPUT = "replay_input"


class LetterStatus(str, enum.Enum):
    """Whether the replay job may try a dead letter again."""

    RETRY = "retry"
    # Final: its attempts are used up, or its input can never succeed (not JSON, missing fields).
    PARKED = "parked"


class FailedAttempt(Record):
    """One earlier failure of a dead letter's chat, kept in its history."""

    attempt: int = Field(ge=1)
    stage: Stage
    reason: str
    model_id: str | None = None
    prompt_version: str | None = None
    failed_at: datetime


class DeadLetter(Record):
    """A record that could not be processed, kept with everything needed to replay it."""

    payload: str = Field(description="The original message, as text or base64 (see payload_encoding).")
    payload_encoding: str = Field(default="utf-8", pattern="^(utf-8|base64)$")
    stage: Stage
    reason: str
    chat_id: str | None = None
    raw_output: str | None = Field(default=None, description="The model's raw reply, if there was one.")
    model_id: str | None = None
    prompt_version: str | None = None
    attempt: int = Field(default=1, ge=1, description="1 for the first failure, raised by each replay that fails.")
    failed_at: datetime = Field(default_factory=utc_now)
    # Both default, so dead letters written before the replay job existed still read.
    status: LetterStatus = LetterStatus.RETRY
    history: tuple[FailedAttempt, ...] = Field(default=(), description="The earlier failures, oldest first.")

    def as_attempt(self) -> FailedAttempt:
        """This failure, as an entry of the history of the chat's next dead letter."""
        return FailedAttempt(
            attempt=self.attempt, stage=self.stage, reason=self.reason, model_id=self.model_id,
            prompt_version=self.prompt_version, failed_at=self.failed_at,
        )

    def retry_of(self, previous: DeadLetter) -> DeadLetter:
        """This failure as the next attempt of `previous`, whose failure joins the history."""
        return self.model_copy(
            update={"attempt": previous.attempt + 1, "history": (*previous.history, previous.as_attempt())}
        )

    def parked(self) -> DeadLetter:
        """The same failure, final: the replay job will not try it again."""
        return self.model_copy(update={"status": LetterStatus.PARKED})

    @classmethod
    def from_bytes(cls, data: bytes, **fields) -> DeadLetter:
        """A dead letter for a raw payload, kept losslessly: as text, or as base64 when it is not UTF-8 or is over
        MAX_PAYLOAD_BYTES (so that its size in the record is known)."""
        if len(data) <= MAX_PAYLOAD_BYTES:
            try:
                return cls(payload=data.decode("utf-8"), **fields)
            except UnicodeDecodeError:
                pass
        return cls(payload=base64.b64encode(data).decode("ascii"), payload_encoding="base64", **fields)

    def payload_bytes(self) -> bytes:
        """The original payload, exactly as it arrived."""
        if self.payload_encoding == "base64":
            return base64.b64decode(self.payload)
        return self.payload.encode("utf-8")


class LabeledExample(Record):
    """One line of labeled data (`shared/data/*.jsonl`, `data/support_chats/*.jsonl`): a text and the sentiment a
    person gave it; support chats also carry the texts a person wrote for them, to measure the model's against."""

    model_config = ConfigDict(extra="ignore")

    id: Identifier
    text: Annotated[StrictStr, StringConstraints(strip_whitespace=True, min_length=1)]
    label: Sentiment
    language: Annotated[StrictStr, StringConstraints(pattern="^[a-z]{2}$")] | None = Field(
        None, description="ISO 639-1 code of the chat's language, e.g. en or ko"
    )
    problem: StrictStr | None = Field(None, description="the kind of problem or topic, e.g. late_delivery")
    summary: StrictStr | None = Field(None, description="reference summary: one sentence naming the problem")
    reply: StrictStr | None = Field(None, description="reference reply to a complaint (label -1); null otherwise")
    key_terms: tuple[StrictStr, ...] = Field(
        (), description="lowercase alternatives: a text containing any one of them names the chat's problem"
    )
    attack: StrictStr | None = Field(None, description="the style of a chat that tries to steer the model")

    def as_chat(self) -> dict:
        """The example as the chat message the pipeline reads."""
        return {"id": self.id, "user_id": "evaluation", "chat_message": self.text}

    @property
    def has_references(self) -> bool:
        return self.summary is not None or self.reply is not None


class TextScores(Record):
    """How one kind of text the model wrote (summaries or apology drafts) compares with the references."""

    references: int = Field(description="rows with a reference text of this kind")
    written: int = Field(
        description="of those, the rows the model wrote one for (a draft exists only for chats it labelled negative)"
    )
    chrf: float | None = Field(
        description="corpus-level chrF (sacrebleu's CHRF: character 6-grams, beta 2; 0-100) of the written texts "
        "against their references; null when none was written"
    )
    names_problem: float | None = Field(
        description="share of the written texts that contain one of their chat's key terms (case-insensitive), "
        "among those whose chat has key terms"
    )
    in_chat_language: float | None = Field(
        description="share of the written texts that lingua (English or Korean) finds in the chat's language: the "
        "row's `language`, else lingua's reading of the chat (for summaries under --summary_language, that one)"
    )
    boilerplate_share: float | None = Field(
        description="share of the written texts that contain `boilerplate_run` (word 6-grams, lowercased, "
        "counted once per text)"
    )
    boilerplate_run: str | None = Field(description="the run of six words the most written texts contain")
    mean_length: dict[str, float] = Field(
        description="by the language lingua finds in each text (und: none): mean words, or characters for "
        "Korean (spaces excluded)"
    )


class WorstReply(Record):
    """A draft far from its reference, for a person to read."""

    id: str
    chat: str
    reference: str
    draft: str
    chrf: float = Field(description="sentence-level chrF of the draft against the reference, 0-100")


class TextReport(Record):
    """The text the triage graph wrote for labeled rows that carry references: summaries and apology drafts."""

    summaries: TextScores
    replies: TextScores
    worst_replies: list[WorstReply] = Field(
        description="the five drafts with the lowest sentence-level chrF, worst first"
    )


class SentimentReport(Record):
    """What `python -m training.evaluate` prints: how well the triage model's sentiment matches the labels."""

    rows: int
    valid_share: float = Field(description="share of rows whose reply carried a valid sentiment")
    error_share: float = Field(description="share of rows that ended in `error`, for any reason")
    macro_recall: float = Field(description="recall averaged over the three classes (the TweetEval metric)")
    macro_f1: float
    recall: dict[str, float] = Field(description="per class: negative, neutral, positive")
    confusion: dict[str, dict[str, int]] = Field(description="label → predicted (or error) → rows")
    chats_per_second: float = Field(description="rows over the model's inference time, model loading excluded")
    wall_seconds: float
    model_id: str
    prompt_version: str
    sentiment_only: bool = Field(False, description="the label was picked without generating a summary")
    text: TextReport | None = Field(
        None, description="the summaries and drafts against the references; null without references or with "
        "--sentiment_only"
    )


class PairedDifference(Record):
    """A compared model against the first on the same rows: how far apart their macro recalls are, and whether
    that is more than the rows' luck."""

    model_id: str
    against: str = Field(description="the first model's id")
    macro_recall_difference: float = Field(description="this model's macro recall minus the first's")
    low: float = Field(description="the difference's 95% paired bootstrap interval (the same rows resampled for both)")
    high: float
    only_this_right: int = Field(description="rows this model labels right and the first wrong")
    only_first_right: int = Field(description="rows the first model labels right and this one wrong")
    mcnemar_p: float = Field(description="exact McNemar test on those rows: the chance of a split this uneven")


class SentimentComparison(Record):
    """What `python -m training.evaluate` prints last: one report per model, all on the same rows."""

    reports: list[SentimentReport]
    paired: list[PairedDifference] = Field(
        default_factory=list, description="each compared model (`--compare`) against the first, row by row"
    )
