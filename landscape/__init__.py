"""landscape: scale-invariant networks trained on the sphere at a fixed effective learning rate
(Kodryan, Lobacheva, Nakhodnov, Vetrov, NeurIPS 2022), and analyses of their loss landscape."""
from .version import __version__

from .errors import ArgumentError, LandscapeError
from .models import build_model, model_spec, si_groups
from .data import load_dataset
from .sphere import projected_sgd_step, project_to_sphere, effective_statistics
from .trajectory import Trajectory
from .points import export_checkpoint, load_checkpoint, load_point
from .config import TrainConfig
from .run import train
from .hessian import (Curvature, TraceEstimate, hessian_eigenvalues, hessian_trace, hutchinson_trace,
                      hutchpp_trace, scale_invariant_parameters, spectral_density, top_eigenvalues)
from .interpolation import interpolate_models

__all__ = ["__version__", "LandscapeError", "ArgumentError", "build_model", "model_spec", "si_groups", "load_dataset",
           "projected_sgd_step", "project_to_sphere", "effective_statistics", "Trajectory",
           "export_checkpoint", "load_checkpoint", "load_point", "TrainConfig", "train",
           "Curvature", "TraceEstimate", "hessian_trace", "hessian_eigenvalues", "hutchinson_trace",
           "hutchpp_trace", "top_eigenvalues", "spectral_density", "scale_invariant_parameters",
           "interpolate_models"]
