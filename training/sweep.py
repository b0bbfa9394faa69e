"""A sweep: the runs of ``train.py``'s lambdas one after the other, their locks, their summary."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from datasets import find_splits, list_images, readable_images
from utils.cli import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated, ToolError, UsageError, describe_os_error
from utils.files import remove_stale_parts, write_text_atomic
from utils.process import is_out_of_memory

from .config import TrainingConfig
from .distributed import Dist, setup_processes, teardown_processes
from .failures import OutOfMemory, describe
from .loop import Diverged, Stopped, Trainer
from .runs import LATEST, Plan, RunLock, describe_start, plan_runs
from .stop import StopRequest

PROG = "train.py"


def format_table(rows: list[dict], metric: str) -> str:
    q, label = ("psnr", "PSNR dB") if metric == "mse" else ("ms_ssim", "MS-SSIM")
    lines = [f"{'lambda':>8}  {'best epoch':>10}  {'test loss':>10}  {'bpp':>8}  {label:>8}  status"]
    for r in rows:
        if "loss" in r:
            lines.append(f"{r['lambda']:>8g}  {r['epoch']:>10d}  {r['loss']:>10.4f}  {r['bpp']:>8.4f}  "
                         f"{r[q]:>8.4f}  {r['status']}")
        else:
            lines.append(f"{r['lambda']:>8g}  {'-':>10}  {'-':>10}  {'-':>8}  {'-':>8}  {r['status']}")
    return "\n".join(lines)


def find_data(config: TrainingConfig) -> tuple[list[Path], list[Path], str]:
    """Training and test images: the dataset's splits, the test split from ``--test-dir`` if given."""
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # one warning per unreadable file, even in a second sweep
        train_paths, test_paths, layout = find_splits(config.dataset, config.test_fraction, config.seed)
        if config.test_dir:
            if not Path(config.test_dir).is_dir():
                raise ToolError(f"--test-dir {config.test_dir}: no such folder")
            test_paths = readable_images(list_images(config.test_dir))
            if not test_paths:
                raise ToolError(f"--test-dir {config.test_dir}: no readable images")
            layout += f", tested on {config.test_dir}"
    return train_paths, test_paths, layout


Data = tuple[tuple[Path, ...], tuple[Path, ...], str, str]  # training images, test images, layout, dataset


def sweep_data(plans: list[Plan]) -> list[Data]:
    """Each run's images (:func:`find_data` of its config), each distinct set found once: resumed runs may
    have been made with another seed, test split or --test-dir than the command line's."""
    found: dict[tuple, Data] = {}
    data = []
    for plan in plans:
        c = plan.config
        key = (c.dataset, c.test_fraction, c.seed, c.test_dir)
        if key not in found:
            train_paths, test_paths, layout = find_data(c)
            found[key] = (tuple(train_paths), tuple(test_paths), layout, c.dataset)
        if len(found[key][0]) < c.batch_size:
            raise UsageError(f"{len(found[key][0])} training images, fewer than --batch-size {c.batch_size}"
                             + (f" of {plan.run_dir.name}" if len(plans) > 1 else ""))
        data.append(found[key])
    return data


def failure(e: Exception) -> str:
    """One line for an exception the sweep has no better words for."""
    if is_out_of_memory(e):
        return "out of memory: try a smaller --batch-size or --patch-size"
    return describe(e)


def error(d: Dist | None, message: str) -> None:
    if d is None or d.main:
        print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


def run_sweep(config: TrainingConfig, given: set[str]) -> int:
    """Train every planned run; the exit status (see ``utils.cli``: 0, 1, 2, 130, 143).

    ``given`` names the options the command line gave: a resumed run takes the others from its checkpoint.
    """
    config.check()
    plans = plan_runs(config, given)
    d = None
    locks: list[RunLock] = []
    stop = StopRequest(config.max_minutes).install()
    try:
        d = setup_processes(config.cuda, config.tf32)
        for plan in plans:
            if plan.config.batch_size % d.world:
                raise UsageError(f"--batch-size {plan.config.batch_size} is not divisible by the {d.world} processes")
        data = sweep_data(plans)
        if d.main:
            for plan in plans:  # every run of the sweep, before the first step of any
                locks.append(RunLock(plan.run_dir).acquire())
                remove_stale_parts(plan.run_dir)  # left by a process killed while saving
            for train_paths, test_paths, layout, dataset in dict.fromkeys(data):
                print(f"data: {len(train_paths)} training and {len(test_paths)} test images ({layout} layout) "
                      f"from {dataset}; {d.world} process(es) on {d.device}", flush=True)
            if config.resume or config.checkpoint:
                for plan in plans:
                    print("\n".join(describe_start(plan)), flush=True)
        return _train_all(plans, d, data, stop)
    except (ToolError, OSError):
        raise
    except Exception as e:  # building a model, reading the data: one line too
        raise ToolError(failure(e)) from None
    finally:
        stop.uninstall()
        for lock in locks:
            lock.release()
        teardown_processes(d)


def _train_all(plans: list[Plan], d: Dist, data: list[Data], stop: StopRequest) -> int:
    rows, status = [], 0
    for k, (plan, (train_paths, test_paths, _, _)) in enumerate(zip(plans, data)):
        config = plan.config
        trainer = Trainer(plan, d, list(train_paths), list(test_paths), stop)
        latest = plan.run_dir / LATEST
        resume = f"resume with --checkpoint {latest}" if config.save else "nothing was saved (--no-save)"
        try:
            rows.append(trainer.fit())
        except Diverged as e:
            status = EXIT_FAILURE
            keep = f"; the last good checkpoint is {latest}" if latest.exists() else "; no checkpoint was written"
            error(d, f"{e}: run stopped{keep}")
            rows.append({"lambda": plan.lmbda, "run": plan.run_dir.name, "status": "diverged", **trainer.best})
        except Stopped as e:
            why = f"time budget of {config.max_minutes:g} min reached" if e.reason == "budget" else e.reason
            if d.main:
                print(f"{PROG}: {plan.run_dir.name}: {why} at {e.where}; {resume}"
                      + (" (or --resume for the whole sweep)" if len(plans) > 1 else ""), file=sys.stderr, flush=True)
            rows.append({"lambda": plan.lmbda, "run": plan.run_dir.name, "status": f"stopped ({e.reason})",
                         **trainer.best})
            rows += [{"lambda": p.lmbda, "run": p.run_dir.name, "status": "not started"} for p in plans[k + 1:]]
            status = stop.exit_status(e.reason)
            break
        except KeyboardInterrupt as e:  # a second Ctrl-C or SIGTERM: no waiting for the step to end
            if d.main:
                where = f"resume with --checkpoint {latest}" if latest.exists() else "no checkpoint was written"
                print(f"{PROG}: {'terminated' if isinstance(e, Terminated) else 'interrupted'}: {where}",
                      file=sys.stderr, flush=True)
            return EXIT_TERMINATED if isinstance(e, Terminated) else EXIT_INTERRUPTED
        except OSError as e:  # a full disk while saving: the previous checkpoint is intact
            keep = f"; the last good checkpoint is {latest}" if latest.exists() else ""
            raise ToolError(f"{describe_os_error(e)}{keep}") from None
        except ToolError:
            raise
        except Exception as e:  # out of memory, or a bug: one line, and the run's workers are gone already
            keep = f"; the last good checkpoint is {latest}" if latest.exists() else ""
            what = str(e) if isinstance(e, OutOfMemory) else f"{plan.run_dir.name}: {failure(e)}"
            raise ToolError(f"{what}{keep}") from None
        finally:
            trainer.close()
    if d.main:
        table = format_table(rows, plans[0].config.metric)
        print(table, flush=True)
        if plans[0].config.save and len(rows) > 1:
            write_text_atomic(plans[0].run_dir.parent / "sweep_summary.txt", table + "\n")
    return status

