"""The command-line tools' shared convention: one-line errors, exit statuses, stop signals.

A failure is one line ``<tool>: error: <message>`` on stderr and an exit
status of 2 for a wrong command line (argparse's own status), 1 for anything
else the user can act on (missing or damaged files, bad data), 130 when
interrupted and 143 when terminated (SIGTERM); tools with an extra status say
so (eval.py: 3, a decoder that disagrees with its encoder).
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any, Callable

#: Exit statuses shared by all tools.
EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 2, 130, 128 + signal.SIGTERM


class ToolError(Exception):
    """A failure the user can act on; the message is one readable line."""

    exit_status = EXIT_FAILURE


class UsageError(ToolError):
    """A command line that cannot work as given (a bad option value or combination)."""

    exit_status = EXIT_USAGE


class Terminated(KeyboardInterrupt):
    """SIGTERM (a cluster's pre-emption, ``kill``): unwinds like Ctrl-C, so clean-ups run."""


def first_line(text: object) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


def describe_os_error(e: OSError) -> str:
    """``No space left on device: out.png`` rather than Python's ``[Errno 28] …`` form."""
    what = e.strerror or first_line(e) or type(e).__name__
    return f"{what}: {e.filename}" if e.filename else what


def error_line(prog: str, message: object) -> str:
    return f"{prog}: error: {first_line(message) if message else 'failed'}"


def run_tool(prog: str, body: Callable[[], int]) -> int:
    """Run a tool's ``main`` body under the shared convention (see the module docstring).

    SIGTERM raises :class:`Terminated` while ``body`` runs, so temporary files
    are removed on the way out exactly as for Ctrl-C.
    """
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        return body()
    except ToolError as e:
        print(error_line(prog, e), file=sys.stderr, flush=True)
        return e.exit_status
    except OSError as e:
        print(error_line(prog, describe_os_error(e)), file=sys.stderr, flush=True)
        return EXIT_FAILURE
    except MemoryError:
        print(error_line(prog, "out of memory"), file=sys.stderr, flush=True)
        return EXIT_FAILURE
    except Terminated:
        print(f"{prog}: terminated", file=sys.stderr, flush=True)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the shared one-line error: ``prog: error: message (see --help)``, status 2."""

    def error(self, message: str) -> None:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {first_line(message)} (see --help)\n")


def shown_default(value: Any) -> str:
    """A default as the command line would spell it: ``45 48``, ``on``, ``0.0001``."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return str(value)


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the text gives it already or it has none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or default is None or default is argparse.SUPPRESS or default is False
                or "default" in text):
            return text
        return f"{text} (default: {shown_default(default).replace('%', '%%')})"


def require_cuda(parser: argparse.ArgumentParser) -> None:
    """``--cuda`` where torch sees no CUDA device: the tools' usage error (one line, exit status 2).

    The authors' commands carry ``--cuda``; on a machine without a GPU they
    stop here, before any work, rather than deep inside torch.
    """
    import torch

    if not torch.cuda.is_available():
        parser.error("--cuda: no CUDA device is available here (leave out --cuda to run on the CPU)")
