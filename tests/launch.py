"""How tests start `accelerate launch`: through this interpreter, so an unactivated venv works too."""

import sys

# `python -m accelerate.commands.launch` is what the `accelerate launch` console script runs; the
# script itself is only on PATH when the venv is activated.
ACCELERATE_LAUNCH = [sys.executable, "-m", "accelerate.commands.launch"]
