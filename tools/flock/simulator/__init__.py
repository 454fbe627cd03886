"""A local FLock FedLedger simulator with real validator scoring (FLOCK_API.md sections 3-6, 9, 12)."""

from tools.flock.simulator.app import create_app
from tools.flock.simulator.faults import FaultPlan, FaultRule
from tools.flock.simulator.server import SimulatorServer
from tools.flock.simulator.store import Refusal, SimulatorConfig, SimulatorStore
from tools.flock.simulator.tasks import DEMO_TASK_DIR, TaskFolder, TaskFolderError, load_task_folder
from tools.flock.simulator.validator import SimulatorValidator, ValidationOutcome

__all__ = [
    "DEMO_TASK_DIR",
    "FaultPlan",
    "FaultRule",
    "Refusal",
    "SimulatorConfig",
    "SimulatorServer",
    "SimulatorStore",
    "SimulatorValidator",
    "TaskFolder",
    "TaskFolderError",
    "ValidationOutcome",
    "create_app",
    "load_task_folder",
]
