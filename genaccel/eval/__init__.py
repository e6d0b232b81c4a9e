"""Evaluation: FID / KID (own Inception), FVD (own I3D), fidelity to the dense output, timing."""

from genaccel.eval.frechet import frechet_distance

__all__ = ["frechet_distance"]
