"""``landscape`` command line: a thin layer over the Python API.

Every user error becomes one line on stderr and exit status 2, never a traceback; a write the file
system refused (full, read-only) exit status 4.
"""
from __future__ import annotations

import os
import re
import sys
from importlib import import_module

from .. import __version__
from ..errors import LandscapeError
from .common import Parser

# one module per command, in the order of `landscape --help`
COMMANDS = ("train", "show", "export", "repack", "repair", "evaluate", "toy", "sharpness", "interpolate",
            "sweep", "regimes", "double_descent", "random_walk", "surface", "report")


def torch_version() -> str:
    import torch
    return torch.__version__


def build_parser() -> Parser:
    parser = Parser(prog="landscape", description="Scale-invariant networks trained on the sphere "
                    "at a fixed effective learning rate, and their loss landscape.")
    parser.add_argument("--version", action="version", version=f"landscape {__version__} (torch {torch_version()})")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS:
        import_module(f".{command}", __name__).add_parser(sub)
    return parser


# options whose values may start with '-' (a range from a negative number): argparse would read
# '--grid -1:1:21' as two options, so the value is attached ('--grid=-1:1:21')
NEGATIVE_VALUES = ("--grid",)


# a value that reads as a negative number ('-1e-3', '-inf', '-.5'): attached to the option before
# it, so that argparse takes it as that option's value (and the option's check refuses it in words)
NEGATIVE_NUMBER = re.compile(r"^-(\d|\.\d|inf|infinity|nan)", re.IGNORECASE)


def _attach_negative_values(argv: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(argv):
        if i + 1 < len(argv) and argv[i].startswith("--") and "=" not in argv[i] and (
                (argv[i] in NEGATIVE_VALUES and argv[i + 1].startswith("-"))
                or NEGATIVE_NUMBER.match(argv[i + 1])):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def in_flags(message: str, arguments, parser, command: str) -> str:
    """A library message in the command's terms: each Python argument it names (``batch_size``)
    becomes the command's flag for it (``--batch-size``) or its positional name."""
    sub = next(a for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict))
    actions = {a.dest: a for a in sub.choices[command]._actions}
    for name in arguments:
        action = actions.get(name)
        if action is None:
            continue
        shown = max(action.option_strings, key=len) if action.option_strings else (action.metavar or name.upper())
        message = re.sub(rf"(?<![\w./-]){re.escape(name)}(?![\w/-])", shown, message)
    return message


OUTPUTS = ("json", "plot", "out")  # the options that name files a command writes


def refuse_inputs_as_outputs(args) -> None:
    """A command never writes over one of its own inputs (``traj.h5@EPOCH`` names traj.h5):
    ``export X.h5 -o X.h5 --overwrite`` would replace the trajectory with its checkpoint."""
    from ..files import refuse_input_as_output
    inputs = []
    for key, value in vars(args).items():
        if key in OUTPUTS:
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                path = item if os.path.exists(item) else item.rpartition("@")[0]
                if path and os.path.isfile(path):
                    inputs.append(path)
    for key in OUTPUTS:
        out = getattr(args, key, None)
        if isinstance(out, str):
            refuse_input_as_output(out, *inputs)


def main(argv=None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(_attach_negative_values(list(sys.argv[1:] if argv is None else argv)))
    if extra:  # told by the command's own parser, which knows its options (and the one meant)
        command = next(a for a in parser._actions if isinstance(a.choices, dict)).choices[args.command]
        command.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(args, "quiet", False):  # -q: dashboards' own libraries quiet too
        os.environ.setdefault("WANDB_SILENT", "true")
    try:
        refuse_inputs_as_outputs(args)
        code = args.run(args)
    except LandscapeError as e:
        print(f"landscape {args.command}: error: {in_flags(str(e), e.arguments, parser, args.command)}",
              file=sys.stderr)
        return getattr(e, "exit_status", 2)
    except BrokenPipeError:  # output piped into `head` and the like
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # a write the file system refused outside the guarded writes (a folder)
        from ..files import is_storage_error, storage_error
        if not is_storage_error(e):
            raise
        error = storage_error(e.filename or "the output", e)
        print(f"landscape {args.command}: error: {error}", file=sys.stderr)
        return error.exit_status
    except KeyboardInterrupt:
        how = {"train": "continue with --resume", "sweep": "re-run the same command to continue"}
        print(f"landscape {args.command}: interrupted; "
              + (f"completed epochs are saved ({how[args.command]})" if args.command in how
                 else "nothing was written"), file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
