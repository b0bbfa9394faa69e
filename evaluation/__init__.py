"""Evaluation: checkpoints over image folders, metrics, results files, BD figures, plots, baselines."""

from .bd import bd_metrics
from .evaluate import evaluate_image, mean_point
from .inputs import EvalError, find_checkpoints, load_images
from .metrics import bits, ms_ssim, ms_ssim_db, psnr, psnr_from_mse, quality, quantize_8bit
from .plots import plot_rd
from .results import RDError, read_results, results_document, write_json

__all__ = [
    "EvalError", "RDError", "bd_metrics", "bits", "evaluate_image", "find_checkpoints", "load_images",
    "mean_point", "ms_ssim", "ms_ssim_db", "plot_rd", "psnr", "psnr_from_mse", "quality", "quantize_8bit",
    "read_results", "results_document", "write_json",
]
