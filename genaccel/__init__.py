"""genaccel: make generative visual models faster without making them worse."""

from genaccel.api import applied, apply, is_applied, remove
from genaccel.config import ProxyAttentionConfig, WindowAttentionConfig
from genaccel.plans import SparsityPlan, calibrate
from genaccel.token_pruning import VisualTokenPruningConfig

__version__ = "0.1.0"
__all__ = ["apply", "remove", "applied", "is_applied", "ProxyAttentionConfig", "WindowAttentionConfig",
           "SparsityPlan", "calibrate", "VisualTokenPruningConfig", "__version__"]
