"""Calibrated sparsity plans: per-block, per-step attention choices tuned to a model within a fidelity budget."""

from genaccel.plans.calibrate import calibrate, default_candidates
from genaccel.plans.cost import CostModel
from genaccel.plans.plan import SparsityPlan, format_choice, parse_choice

__all__ = ["calibrate", "default_candidates", "CostModel", "SparsityPlan", "format_choice", "parse_choice"]
