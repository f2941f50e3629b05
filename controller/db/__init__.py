"""The controller's store: typed tables and the engine factory."""

from controller.db.engine import make_engine, make_sessionmaker
from controller.db.models import Base, Deployment, DeploymentDevice, Device, EventRow, ModelVersion, TelemetryRow

__all__ = [
    "Base",
    "Deployment",
    "DeploymentDevice",
    "Device",
    "EventRow",
    "ModelVersion",
    "TelemetryRow",
    "make_engine",
    "make_sessionmaker",
]
