"""Controller errors; the REST layer maps each to one HTTP status in one place (main.py).

::

    ControllerError
    ├── NotFoundError        404  unknown device, model, deployment
    ├── ConflictError        409  duplicate device
    ├── InvalidRequestError  422  bad upload, unknown profile, incompatible target
    ├── StorageError         507 (disk full) / 500 (other IO): nothing half-written
    └── UnavailableError     503  MQTT side disabled
"""

from __future__ import annotations


class ControllerError(Exception):
    status_code = 500


class NotFoundError(ControllerError):
    status_code = 404


class ConflictError(ControllerError):
    status_code = 409


class InvalidRequestError(ControllerError):
    status_code = 422


class StorageError(ControllerError):
    def __init__(self, message: str, *, disk_full: bool = False) -> None:
        super().__init__(message)
        self.status_code = 507 if disk_full else 500


class UnavailableError(ControllerError):
    """The action needs a part that is switched off or down (e.g. MQTT disabled)."""

    status_code = 503


__all__ = [
    "ConflictError",
    "ControllerError",
    "InvalidRequestError",
    "NotFoundError",
    "StorageError",
    "UnavailableError",
]
