"""Provider batch mode: many requests as one job at the providers' batch prices.

``await synth.generate_batch(inputs, mode="batch")`` returns the same records as
online mode (one per input, in order). The job is planned (inputs already
answered are skipped; the rest cut to the provider's limits), every batch id is
written to a state file the moment it exists, and a rerun of the same job
re-attaches to its running batches instead of paying twice. See ``docs/batch.md``.
"""

from ._errors import (
    BatchItemCanceledError,
    BatchItemExpiredError,
    BatchJobBusyError,
    BatchRefusedError,
)
from ._job import BatchOptions, BatchProgress
from ._plan import custom_id, index_of, job_id
from ._run import batch_jobs, cancel_job, collect_job
from ._state import BatchRow, JobRow, default_state_path

__all__ = [
    "BatchItemCanceledError",
    "BatchItemExpiredError",
    "BatchJobBusyError",
    "BatchOptions",
    "BatchProgress",
    "BatchRefusedError",
    "BatchRow",
    "JobRow",
    "batch_jobs",
    "cancel_job",
    "collect_job",
    "custom_id",
    "default_state_path",
    "index_of",
    "job_id",
]
