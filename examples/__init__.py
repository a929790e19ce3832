"""Example call flows to copy: an IVR menu, an AI receptionist, an outbound reminder, voicemail.

Serve them all with `voxgate serve --flows examples`, or one with `--flows examples.ivr_menu`.
Files the examples keep (the receptionist's CRM, voicemail WAVs) go under `data_dir()`.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "VOXGATE_EXAMPLES_DIR"
DEFAULT_DATA_DIR = "var/examples"


def data_dir() -> Path:
    """The examples' own folder ($VOXGATE_EXAMPLES_DIR, else var/examples in the working dir), created.

    It touches the disk: flows call it through asyncio.to_thread.
    """
    folder = Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
