"""Train TCM with the paper's recipe; one run per lambda, resumable to the bit on CPU.

    python train.py -d DATASET --cuda --N 128 --lambda 0.05 --epochs 50 --lr_epoch 45 48 \
        --save_path DIR --save
    python train.py -d DATASET --lambda 0.0025 0.0035 0.0067 0.013 0.025 0.05 --save_path DIR
    python train.py -d DATASET --checkpoint DIR/mse_lambda_0.05/checkpoint_latest.pth.tar --save_path DIR
    python train.py -d DATASET --pretrained published.pth.tar --lambda 0.013 --save_path DIR
    python train.py -d DATASET --lambda 0.013 --max-minutes 60   # then --checkpoint … to go on
    torchrun --nproc_per_node 4 train.py -d DATASET --cuda ...

Each lambda trains into ``SAVE_PATH/<type>_lambda_<lambda>/`` holding
``checkpoint_latest.pth.tar``, ``checkpoint_best.pth.tar`` (lowest test
loss), ``checkpoint_epoch<E>.pth.tar`` every ``--save-every`` epochs,
``metrics.jsonl`` (one line per epoch) and the TensorBoard log.  Every
checkpoint loads with ``torch.load(..., weights_only=True)`` and with
``models.load_model``.  SIGTERM, Ctrl-C or ``--max-minutes`` stop a run
after the step in progress with a checkpoint it resumes from (a second
signal stops at once).  The library code is the ``training`` package.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from models import TCMConfig
from training.config import TrainingConfig
from training.options import DEFAULT_LAMBDA, given_options, spelled
from training.sweep import PROG, run_sweep
from utils.cli import ArgumentParser, run_tool
from utils.process import keep_freed_memory


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the text gives it already or it has none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or default is None or default is argparse.SUPPRESS or default is False
                or "default" in text):
            return text
        return f"{text} (default: {spelled(default).replace('%', '%%')})"


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog=PROG, description="Train TCM (Liu, Sun, Katto, CVPR 2023).",
                       formatter_class=DefaultsHelpFormatter)
    a = p.add_argument
    a("-d", "--dataset", required=True, help="folder with train/ and test/, or a plain folder of images")
    a("-e", "--epochs", type=int, default=50, help="epochs to train (in all, counting those of a resumed run)")
    a("-lr", "--learning-rate", type=float, default=1e-4, help="learning rate of the network's Adam")
    a("-n", "--num-workers", type=int, default=min(2, os.cpu_count() or 1), help="data workers per process")
    a("--lambda", dest="lmbda", type=float, nargs="+", default=None,
      help=f"one or more lambdas, one run each (default: {DEFAULT_LAMBDA}, or the checkpoint's)")
    a("--type", dest="metric", choices=("mse", "ms-ssim"), default="mse", help="distortion of the loss")
    a("--batch-size", type=int, default=8, help="batch over all processes")
    a("--test-batch-size", type=int, default=8, help="batch of the test pass")
    a("--aux-learning-rate", type=float, default=1e-3, help="learning rate of the Adam on the bottleneck's quantiles")
    a("--patch-size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"),
      help="random training crops and centre test crops; multiples of 128")
    a("--cuda", action="store_true", help="train on CUDA (device LOCAL_RANK under torchrun)")
    a("--amp", nargs="?", const="fp16", choices=("fp16", "bf16"), default=None,
      help="mixed precision on CUDA (default: off): float16 (with gradient scaling; the default of a bare --amp) or "
           "bfloat16; the entropy models and the loss stay float32")
    a("--tf32", action=argparse.BooleanOptionalAction, default=True,
      help="TF32 matmuls and convolutions on CUDA for the float32 parts (default: on; --no-tf32: full float32)")
    a("--save", action=argparse.BooleanOptionalAction, default=True, help="write checkpoints (--no-save: don't)")
    a("--save_path", "--save-path", dest="save_path", default=None,
      help="parent folder of the run folders (default: runs, or the resumed checkpoint's parent)")
    a("--save-every", type=int, default=5, help="keep checkpoint_epoch<E> every this many epochs (0: never)")
    a("--seed", type=int, default=0, help="seed (0..4294967295) of the weights, the crops and a plain folder's test split")
    a("--clip_max_norm", "--clip-max-norm", dest="clip_max_norm", type=float, default=1.0,
      help="gradient clipping norm (0: off)")
    a("--lr_epoch", "--lr-epoch", dest="lr_epoch", type=int, nargs="+", default=[45, 48],
      help="epochs where the learning rate is divided by 10")
    a("--checkpoint", default=None, help="resume this run: weights, optimizers, scheduler, epoch, RNG")
    a("--pretrained", default=None, help="start a new run from these weights only (fine-tuning)")
    a("--resume", action="store_true", help="resume each run of the sweep whose folder has a latest checkpoint")
    a("--steps-per-epoch", type=int, default=0, help="cap on training batches per epoch (0: whole set)")
    a("--max-minutes", type=float, default=None,
      help="stop at the first step after this many minutes, with a checkpoint to resume from")
    a("--test-dir", default=None, help="pick the best epoch on this folder of images instead of the test split")
    a("--max-test-images", type=int, default=0, help="cap on test images per epoch (0: all)")
    a("--test-fraction", type=float, default=0.1, help="held-out part of a plain image folder")
    a("--no-progress", action="store_true", help="no progress bar")
    a("--image-every", type=int, default=1,
      help="TensorBoard pictures of the first test image every this many epochs (0: never)")
    g = p.add_argument_group("model shape (default: the published TCM-Large; N=64 is TCM-S)")
    shape = {"N": "channels of the transforms", "M": "channels of the latent",
             "num_slices": "channel slices the latent is coded in",
             "max_support_slices": "earlier slices each slice's entropy model sees",
             "hyper_channels": "channels of the hyperprior's latent z",
             "atten_dim": "inner width of the entropy model's SWAtten"}
    for name, what in shape.items():
        g.add_argument(f"--{name.replace('_', '-')}", type=int, default=None,
                       help=f"{what} (default: {getattr(TCMConfig, name)})")
    g.add_argument("--entropy-hidden", type=int, nargs=2, default=None, metavar=("A", "B"),
                   help=f"hidden widths of the slice transforms (default: {spelled(TCMConfig.entropy_hidden)})")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    keep_freed_memory()  # large activations reuse freed memory instead of faulting pages in
    return run_tool(PROG, lambda: run_sweep(TrainingConfig.from_args(args), given_options(parser, argv)))


if __name__ == "__main__":
    sys.exit(main())
