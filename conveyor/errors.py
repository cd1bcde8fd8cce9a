"""The errors of Conveyor's engine and services, under one root.

The web layer maps these to HTTP answers and the CLI to messages, so they live in the
lowest layer every other one imports. A stage author's errors are another audience and
have their own root (:class:`actors.errors.StageError`); the Python client's
:class:`conveyor.client.APIError` is a third (it runs on another machine).
"""

from __future__ import annotations


class ConveyorError(Exception):
    """Raised when the engine or a service cannot do what was asked; the root of these errors."""


class ConfigError(ConveyorError):
    """Raised when an environment variable is missing or malformed."""


class JobError(ConveyorError):
    """Raised when a job request cannot be carried out."""


class JobNotFound(JobError):
    """Raised when no job with that id exists for that user."""


class JobConflict(JobError):
    """Raised when the job's status does not allow the transition (e.g. cancel a finished job)."""


class IdempotencyConflict(JobError):
    """Raised when an Idempotency-Key is reused with a different request body."""


class InvalidJobInput(JobError):
    """Raised when a job request is invalid; ``errors`` lists ``{"field", "message"}``."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


class FileNotFound(ConveyorError):
    """Raised when a job input names a file the user does not own (or that does not exist)."""

    def __init__(self, field: str, file_id: str) -> None:
        super().__init__(f"no file {file_id!r}")
        self.field = field
        self.file_id = file_id


class FileError(ConveyorError):
    """Raised when an upload or a download cannot be served."""


class FileTooLarge(FileError):
    """Raised when an upload is larger than the configured limit; ``name`` says which limit."""

    name = "max_upload_bytes"

    def __init__(self, limit: int) -> None:
        super().__init__(f"the file is larger than the limit of {limit} bytes (CONVEYOR_MAX_UPLOAD_BYTES)")
        self.limit = limit


class QuotaExceeded(FileTooLarge):
    """Raised when an upload would take the user's stored files over their storage quota."""

    name = "user_quota_bytes"

    def __init__(self, limit: int, used: int) -> None:
        FileError.__init__(self, f"the file would take your stored files over your quota of {limit} bytes "
                                 f"({used} used; CONVEYOR_USER_QUOTA_BYTES); delete files or wait for retention")
        self.limit, self.used = limit, used


class UnsupportedFile(FileError):
    """Raised when an upload's content is not an accepted audio, video or image kind."""


class StoredFileNotFound(FileError):
    """Raised when no file with that id exists for that user."""


class StorageError(ConveyorError):
    """Raised when a storage key is malformed or a stored file is missing."""


class UserNotFound(ConveyorError, LookupError):
    """Raised when no user, or more than one, has that name or id."""
