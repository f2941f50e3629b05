"""edgefleet wire contract shared by the controller and the agent.

Only pydantic, cryptography and the standard library may be imported here: the
agent installs this package on devices that have nothing else.
"""

from shared.version import AGENT_VERSION, SCHEMA_VERSION

__all__ = ["AGENT_VERSION", "SCHEMA_VERSION"]
