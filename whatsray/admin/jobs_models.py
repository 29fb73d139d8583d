"""Bodies of the jobs API. A job is `whatsray.scheduling.Job` itself (and a run the store's
`JobRunRecord`): the API adds only the pages around them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from whatsray.scheduling import Job, JobRunRecord

__all__ = ["JobRunsPage", "JobsPage"]


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True)


class JobsPage(_Body):
    jobs: list[Job]


class JobRunsPage(_Body):
    """A job's runs, newest fire time first. `next_offset`: the next page, None at the end."""

    runs: list[JobRunRecord]
    limit: int
    offset: int
    next_offset: int | None
