"""Evaluation: checkpoints over image folders, results files, BD figures, plots, baselines (metrics: ``metrics``).

The names below load from their modules on first use, so that the tools'
command lines (``evaluation.options``) are read without importing torch.
"""

from typing import TYPE_CHECKING

from utils.light_imports import lazy_exports

if TYPE_CHECKING:
    from .bd import bd_metrics
    from .evaluate import evaluate_image, mean_point
    from .inputs import EvalError, find_checkpoints, load_images
    from .plots import plot_rd
    from .results import RDError, read_results, results_document, write_json

__getattr__, __dir__ = lazy_exports(__name__, {
    "bd_metrics": "bd", "evaluate_image": "evaluate", "mean_point": "evaluate", "EvalError": "inputs",
    "find_checkpoints": "inputs", "load_images": "inputs", "plot_rd": "plots", "RDError": "results",
    "read_results": "results", "results_document": "results", "write_json": "results",
})

__all__ = [
    "EvalError", "RDError", "bd_metrics", "evaluate_image", "find_checkpoints", "load_images", "mean_point",
    "plot_rd", "read_results", "results_document", "write_json",
]
