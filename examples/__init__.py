"""Example call flows to copy: an IVR menu, an AI receptionist, an outbound reminder, voicemail.

Serve them all with `voxgate serve --flows examples`, or one with `--flows examples.ivr_menu`.
Files the examples keep (the receptionist's CRM, voicemail WAVs) go under `data_dir()`.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "EXAMPLES_DATA_DIR"
DEFAULT_DATA_DIR = "var/examples"


def data_dir() -> Path:
    """The examples' own folder ($EXAMPLES_DATA_DIR, else var/examples in the working dir), created.

    It touches the disk: flows call it through asyncio.to_thread.
    """
    folder = Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)  # not VOXGATE_*: settings refuse unknown ones
    folder.mkdir(parents=True, exist_ok=True)
    return folder
