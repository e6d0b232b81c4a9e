"""Import a script of benchmarks/ as a module, and a stand-in feature extractor, for the tests that exercise them."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """benchmarks/<name>.py as the module `benchmarks_<name>` (registered in sys.modules: dataclasses
    look their module up there)."""
    module_name = f"benchmarks_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


class PixelStatistics:
    """Stands in for the Inception network (minutes on CPU): 6 features per image, its channel means and stds."""

    def __init__(self, mode):
        assert mode == "legacy-tf"

    def __call__(self, images):
        images = images.float() / 255 if images.dtype == torch.uint8 else images.float()
        return torch.cat([images.mean(dim=(2, 3)), images.std(dim=(2, 3))], dim=1)
