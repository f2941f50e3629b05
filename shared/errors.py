"""The project's exception hierarchy.

Two roots, as in python-tuf: data the other side sent us is bad, or the
transport failed.  Callers decide recoverability by root, not by leaf::

    EdgefleetError
    ├── RemoteDataError            bad data from a peer; retrying the same data won't help
    │   ├── ProtocolError          malformed topic or payload, unknown schema version
    │   └── VerificationError      a well-formed manifest/artifact we refuse
    │       ├── SignatureError     bad or missing Ed25519 signature
    │       ├── HashMismatchError  artifact sha256 differs from the manifest
    │       ├── SizeMismatchError  artifact size differs from the manifest
    │       ├── RollbackError      version not newer than the active one
    │       ├── ExpiredError       manifest past its expiry
    │       ├── BudgetError        artifact over the profile's size budget
    │       ├── IncompatibleError  wrong runtime, profile or device
    │       └── SelfTestError      the model loads but gives wrong answers
    ├── TransportError             broker unreachable, connection lost, timeout
    └── ModelLoadError             the runtime cannot load or run the model
"""

from __future__ import annotations


class EdgefleetError(Exception):
    """Root of every error this project raises on purpose."""


class RemoteDataError(EdgefleetError):
    """Data received from a peer is unacceptable."""


class ProtocolError(RemoteDataError):
    """A topic or payload does not follow the wire contract."""


class VerificationError(RemoteDataError):
    """A well-formed manifest or artifact failed verification.

    ``reason`` is a short machine-readable code that goes into the failure
    event, so operators can count failures by cause.
    """

    reason = "verification_failed"


class SignatureError(VerificationError):
    reason = "bad_signature"


class HashMismatchError(VerificationError):
    reason = "hash_mismatch"


class SizeMismatchError(VerificationError):
    reason = "size_mismatch"


class RollbackError(VerificationError):
    reason = "version_not_newer"


class ExpiredError(VerificationError):
    reason = "expired"


class BudgetError(VerificationError):
    reason = "over_budget"


class IncompatibleError(VerificationError):
    reason = "incompatible"


class SelfTestError(VerificationError):
    reason = "self_test_failed"


class TransportError(EdgefleetError):
    """The broker or network failed; the same operation may succeed later."""


class ModelLoadError(EdgefleetError):
    """A runtime could not load or run a model file."""

    reason = "model_load_failed"


__all__ = [
    "BudgetError",
    "EdgefleetError",
    "ExpiredError",
    "HashMismatchError",
    "IncompatibleError",
    "ModelLoadError",
    "ProtocolError",
    "RemoteDataError",
    "RollbackError",
    "SelfTestError",
    "SignatureError",
    "SizeMismatchError",
    "TransportError",
    "VerificationError",
]
