"""Every test here runs on one thread; tests/speculative (tiny_targets) is importable."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "speculative"))


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    yield
