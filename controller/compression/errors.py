"""Errors of the compression engine.

::

    EdgefleetError
    └── CompressionError            compression could not produce a result
        ├── MissingInputError       a pass needs something the caller did not give (torch model, labels)
        ├── UnsupportedOpError      the model uses an operator a converter cannot handle
        ├── NotApplicableError      a pass does not fit this model's structure (search skips it)
        └── CompressionFailed       every candidate broke a profile limit; carries the report
"""

from __future__ import annotations

from typing import Any

from shared.errors import EdgefleetError


class CompressionError(EdgefleetError):
    """Root of every error the compression engine raises on purpose."""


class MissingInputError(CompressionError):
    """A pass needs an input the caller did not provide (e.g. a PyTorch model, labels)."""


class NotApplicableError(CompressionError):
    """The pass does not fit this model (e.g. structured pruning of a non-sequential net)."""


class UnsupportedOpError(CompressionError):
    """An operator the engine or a converter cannot handle; names the op and the node."""

    def __init__(self, op_type: str, node_name: str, detail: str = "") -> None:
        self.op_type = op_type
        self.node_name = node_name
        msg = f"unsupported operator {op_type!r} at node {node_name!r}"
        super().__init__(f"{msg}: {detail}" if detail else msg)


class CompressionFailed(CompressionError):
    """No candidate met every limit of the profile.

    ``report`` lists the closest candidates, each with the limits it broke and by how much,
    so an operator can decide whether to relax the profile or change the model.
    """

    def __init__(self, profile: str, report: list[dict[str, Any]]) -> None:
        self.profile = profile
        self.report = report
        lines = [f"no candidate meets every limit of profile {profile!r}; closest:"]
        for r in report:
            broke = "; ".join(r.get("violations") or []) or r.get("error") or "?"
            lines.append(f"  - {r['name']}: {broke}")
        super().__init__("\n".join(lines))


__all__ = [
    "CompressionError",
    "CompressionFailed",
    "MissingInputError",
    "NotApplicableError",
    "UnsupportedOpError",
]
