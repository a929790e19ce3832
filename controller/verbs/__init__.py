"""The flow verbs beyond the PBX basics: say, play, gather, hold, record, hooks and per-call state.

Each concern has its module; `AdapterCall` (controller.adapter) turns them into methods, so every
PBX adapter has them. They use only the PBX-neutral parts of a call (`line.Line`): its media port,
its AI engines, the keys typed ahead and its end.
"""

from controller.verbs.gather import GatherResult
from controller.verbs.record import RecordingNotSaved, RecordResult

__all__ = ["GatherResult", "RecordResult", "RecordingNotSaved"]
