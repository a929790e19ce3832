"""Flow packages written to tmp_path and imported from there, as a developer's own package would be."""

from __future__ import annotations

import itertools
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

_numbers = itertools.count(1)

WritePackage = Callable[[dict[str, str]], str]


@pytest.fixture
def write_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """write_package({"__init__.py": src, "sales.py": src}) -> the new package's (unique) name, importable."""
    root = tmp_path / "src"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))

    def write(files: dict[str, str]) -> str:
        name = f"devflows_{next(_numbers)}"
        for relative, source in files.items():
            path = root / name / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source))
        return name

    yield write
    for key in [k for k, m in sys.modules.items() if str(getattr(m, "__file__", "") or "").startswith(str(root))]:
        del sys.modules[key]


def rewrite(path: Path, source: str) -> None:
    """Replace a module's source; the reloader must notice even within the same second and size."""
    path.write_text(textwrap.dedent(source))
