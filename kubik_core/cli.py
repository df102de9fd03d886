"""The ``kubik`` command line.

Every capability adds its sub-commands from ``kubik_core/<cap>/cli.py`` through a
``register(subparsers)`` function; this file only lists those modules. Sub-command modules
import their heavy dependencies (torch, trimesh, timm ...) inside the handlers, so
``kubik --help`` stays fast, and they raise ``CommandError`` from ``common/commands.py``
(re-exported here), never importing this file back.
"""
from __future__ import annotations

import argparse
import sys
from importlib import import_module

from .common.commands import CommandError

# kubik_core.<module>.cli (or kubik_core.<module> for single-file commands), in --help order.
COMMAND_MODULES = (
    "prompting.cli",   # kubik analyze
    "params.cli",      # kubik params
    "explain.cli",     # kubik explain
    "classify.cli",    # kubik classify
    "loras.cli",       # kubik loras scan / recommend
    "lora_train.cli",  # kubik lora train
    "generate.cli",    # kubik generate
    "consistency.cli",  # kubik consistency
    "characters.cli",  # kubik characters
    "learning.cli",    # kubik insights
    "recon3d.cli",     # kubik 3d
    "hub.cli",         # kubik hub
    "comfy_client.cli",  # kubik queue
    "variations.cli",  # kubik variations
    "demo",            # kubik demo
)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every sub-command, or, given ``command``, with the modules up to the one
    that registers it: importing a capability's package can cost a few hundred milliseconds
    (numpy and more), which `kubik params` need not pay for `kubik loras`."""
    parser = argparse.ArgumentParser(prog="kubik", description="KubikAI command line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    package = __package__  # "kubik_core", or "<pack folder>.kubik_core" inside ComfyUI
    for name in COMMAND_MODULES:
        import_module(f"{package}.{name}").register(sub)
        if command is not None and command in sub.choices:
            break
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    try:
        status = args.func(args)
    except CommandError as exc:
        print(f"kubik {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `kubik ... | head`: the reader left, nothing more to say
        sys.stderr.close()
        return 0
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
