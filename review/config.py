"""The desk's settings, declared once: flags of `python -m review` and `REVIEW_*` environment variables."""

from __future__ import annotations

import secrets
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///out/review-desk.sqlite3"
# Where Google publishes the keys that sign IAP's header (PEM format, keyed by key id).
IAP_CERTS_URL = "https://www.gstatic.com/iap/verify/public_key"


def new_secret() -> str:
    return secrets.token_urlsafe(32)


class Settings(BaseSettings):
    """Everything the desk needs to know; flags win over environment variables, which win over defaults."""

    model_config = SettingsConfigDict(
        env_prefix="REVIEW_", cli_prog_name="python -m review", cli_implicit_flags=False, frozen=True,
    )

    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL of the desk's database: a SQLite file, or postgresql+psycopg://… (Cloud SQL)",
    )
    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0 in a container)")
    port: int = Field(8000, description="port to listen on")
    subscription: str = Field(
        "", description="review subscription to pull drafts from (projects/P/subscriptions/S); none: no ingest"
    )
    replies_topic: str = Field("", description="topic for approved replies (projects/P/topics/T); none: not sent")
    chats_topic: str = Field(
        "", description="the pipeline's chats topic (projects/P/topics/T), where a chat a sentiment check corrected to "
        "negative goes back for its apology draft; none: not sent"
    )
    bigquery_table: str = Field(
        "", description="table for every decision (PROJECT:DATASET.TABLE, created if needed); none: not written"
    )
    auth: Literal["local", "iap"] = Field(
        "local", description="local: the agent types a name; iap: the user of Identity-Aware Proxy's signed header"
    )
    iap_audience: str = Field(
        "", description="expected audience of IAP's header (/projects/NUMBER/global/backendServices/ID or …)"
    )
    iap_certs_url: str = Field(IAP_CERTS_URL, description="where IAP's public keys are published")
    claim_minutes: float = Field(5.0, gt=0, description="how long opening a draft keeps it for that agent")
    secret_key: str = Field(
        default_factory=new_secret,
        description="signs the session and CSRF cookies (default: new at each start, so sign-ins end with it)",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="logging level")

    @model_validator(mode="after")
    def _iap_needs_an_audience(self) -> Settings:
        # Without the audience, a header signed by IAP for another application would be accepted here.
        if self.auth == "iap" and not self.iap_audience:
            raise ValueError("--auth iap needs --iap_audience")
        return self

    def bigquery_table_id(self) -> str:
        """The table as google-cloud-bigquery names it: PROJECT.DATASET.TABLE."""
        return self.bigquery_table.replace(":", ".", 1)
