"""Evaluation: checkpoints over image folders, results files, BD figures, plots, baselines (metrics: ``metrics``)."""

from .bd import bd_metrics
from .evaluate import evaluate_image, mean_point
from .inputs import EvalError, find_checkpoints, load_images
from .plots import plot_rd
from .results import RDError, read_results, results_document, write_json

__all__ = [
    "EvalError", "RDError", "bd_metrics", "evaluate_image", "find_checkpoints", "load_images", "mean_point",
    "plot_rd", "read_results", "results_document", "write_json",
]
