"""Scheduled jobs (Ray-free): reminders for chats and system jobs, fired exactly once.

See docs/scheduler.md. `SchedulerCore` implements `JobsPort` over the store (jobs and the run
ledger), the inbox (where reminder runs go) and APScheduler 3.x (the alarm clock).
"""

from __future__ import annotations

from whatsray.scheduling.config_jobs import (
    CONFIG_JOB_PREFIX,
    ConfigJob,
    JobsConfigError,
    load_jobs_file,
    parse_jobs,
)
from whatsray.scheduling.core import SchedulerCore, new_job_id
from whatsray.scheduling.errors import (
    JobConflictError,
    JobValidationError,
    SchedulingError,
    UnknownJobError,
)
from whatsray.scheduling.models import (
    CronSpec,
    DateSpec,
    IntervalSpec,
    Job,
    JobPatch,
    JobRunRecord,
    JobSpec,
    Misfire,
    QuietHours,
    TriggerSpec,
)
from whatsray.scheduling.planner import PlannedRun, plan_runs, run_id_for
from whatsray.scheduling.ports import DeadLetterReplayer, EventSink, JobsPort, JobStorePort
from whatsray.scheduling.system import SystemTasks, default_system_jobs
from whatsray.scheduling.validation import GREETING_TASK, SYSTEM_TASKS, validate_job

__all__ = [
    "CONFIG_JOB_PREFIX",
    "GREETING_TASK",
    "SYSTEM_TASKS",
    "ConfigJob",
    "CronSpec",
    "DateSpec",
    "DeadLetterReplayer",
    "EventSink",
    "IntervalSpec",
    "Job",
    "JobConflictError",
    "JobPatch",
    "JobRunRecord",
    "JobSpec",
    "JobStorePort",
    "JobValidationError",
    "JobsConfigError",
    "JobsPort",
    "Misfire",
    "PlannedRun",
    "QuietHours",
    "SchedulerCore",
    "SchedulingError",
    "SystemTasks",
    "TriggerSpec",
    "UnknownJobError",
    "default_system_jobs",
    "load_jobs_file",
    "new_job_id",
    "parse_jobs",
    "plan_runs",
    "run_id_for",
    "validate_job",
]
