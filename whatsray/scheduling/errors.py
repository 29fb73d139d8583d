"""The scheduler's typed errors. They cross Ray (the jobs API calls the Scheduler actor), so each
keeps its constructor arguments in `args` and pickles back to itself."""

from __future__ import annotations

__all__ = ["JobConflictError", "JobValidationError", "SchedulingError", "UnknownJobError"]


class SchedulingError(Exception):
    """Base class of the scheduler's refusals."""


class JobValidationError(SchedulingError, ValueError):
    """A job definition is invalid. `field` is where (`trigger.expression`, `timezone`...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class UnknownJobError(SchedulingError, KeyError):
    """No job has this id."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id

    def __str__(self) -> str:
        return f"no job {self.job_id!r}"


class JobConflictError(SchedulingError):
    """The request contradicts the job's state (an id taken by another definition, deleting a
    system job)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message
