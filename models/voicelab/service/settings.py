"""The studio service's settings, read once from the environment (HML_STUDIO_*)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class StudioSettings(BaseSettings):
    """Shared by the web API and every worker: they must point at the same Redis and folder."""

    model_config = SettingsConfigDict(env_prefix="HML_STUDIO_", frozen=True, extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    """The queue and the job records (Celery's broker and our idempotency/lease keys)."""
    folder: Path = Path("/var/lib/hearmylove-studio")
    """Uploads, checkpoints and packs, one sub-folder per job; shared by all workers (NFS for many machines)."""
    key: Path = Path("/etc/hearmylove-studio/studio.key")
    """The studio's ed25519 signing key (voicelab keygen)."""
    budget_minutes: float = Field(8.0, gt=0, le=120)
    """Default adaptation budget of a clone; a request may ask for less or more, up to max_budget_minutes."""
    vocoder_minutes: float = Field(7.0, ge=0, le=120)
    """Default time for the parent's own vocoder (docs/adaptation.md); 0: packs keep the speaker's vocoder."""
    max_budget_minutes: float = Field(30.0, gt=0, le=240)
    lease_seconds: float = Field(60.0, ge=2)
    """A worker holds a job for this long and renews it every third of it; a dead worker's job is free after it."""
    visibility_timeout: float = Field(900.0, ge=5)
    """Seconds before Redis hands an unacknowledged job to another worker (a dead one's job resumes after it)."""
    restore_interval: float = Field(10.0, ge=1)
    """How often an idle worker looks for jobs whose worker went silent."""
    max_attempts: int = Field(3, ge=1, le=20)
    """Workers that may start a job before it is failed (a clone that kills its worker every time)."""
    broker_host: str | None = None
    """The family broker for pushing packs to speakers (None: pushing is off)."""
    broker_port: int = Field(8883, ge=1, le=65535)
    broker_user: str | None = None
    """The studio's account on the family broker: a member of each family it pushes to."""
    broker_password: str | None = None
    broker_tls: bool = True
    broker_ca: Path | None = None

    @model_validator(mode="after")
    def _budgets(self) -> StudioSettings:
        if self.budget_minutes > self.max_budget_minutes:
            raise ValueError(
                f"HML_STUDIO_BUDGET_MINUTES {self.budget_minutes} is above HML_STUDIO_MAX_BUDGET_MINUTES "
                f"{self.max_budget_minutes}"
            )
        return self
