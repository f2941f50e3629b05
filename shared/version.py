"""Versions that travel on the wire."""

#: Bumped on any incompatible change to a message model; receivers reject
#: messages whose schema_version they do not know.
SCHEMA_VERSION = 1

#: The edgefleet release, reported by agents in their birth message.
AGENT_VERSION = "0.1.0"
