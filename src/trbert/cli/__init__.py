"""The `trbert` command line: this entry point assembles the commands, one module each (its parser
and its handler together: `add(subparsers)` sets `handler`, a function `(args) -> exit status`).
Nothing heavy is imported until a command runs, so `trbert --help` is fast. A handler that raises
one of `common.USER_ERRORS` (CommandError, DataError, CheckpointError) gets a one-line message and
exit status 2.
"""

import argparse
import os
import shlex
import sys
from collections.abc import Sequence

from .. import __version__
from ..hardware import keep_freed_memory
from . import attack, backbone, bench, common, eval, export, long, predict, run, speed, train, wnut

COMMANDS = [run, train, eval, predict, export, speed, wnut, long, bench, attack, backbone]  # in the order `trbert --help` lists them


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trbert",
        description="TR-BERT dynamic token reduction for BERT-family encoders.",
        epilog="Run 'trbert COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"trbert {__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        common.add_threads_option(command.add(subparsers))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["trbert", *argv])  # recorded with results, to rerun them exactly
    try:
        keep_freed_memory()  # every command: fewer page faults on large tensors
        common.set_threads(args.threads)
        return args.handler(args)
    except common.USER_ERRORS as error:  # a bad file, folder or text: one line, no traceback
        print(f"trbert {args.command}: error: {common.user_message(error)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of the output went away (`trbert predict ... | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 1


if __name__ == "__main__":
    sys.exit(main())
