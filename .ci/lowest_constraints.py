"""Print pip constraints that pin every dependency declared in pyproject.toml to its lower bound.

CI's lower-bound job installs genaccel under these, so each `>=X` in pyproject.toml is a version
the test suite has passed on. torch is left out: CI uses the CPU wheel 2.13.0 on disk (other torch
builds pull GBs of CUDA packages); README says which torch versions are known to work.
"""

import re
import sys
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
requirements = project["dependencies"] + project["optional-dependencies"]["test"]
for requirement in requirements:
    match = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*>=\s*([0-9][0-9.]*)\s*(?:;.*)?", requirement)
    if match is None:
        sys.exit(f"pyproject.toml requirement {requirement!r} has no plain lower bound `name>=version`")
    name, version = match.groups()
    if name != "torch":
        print(f"{name}=={version}")
