"""``kubik explain``: the sampling settings chosen for a prompt, with the reason for each.

    kubik explain "portrait of an old fisherman" --family flux_dev --verbosity detailed

It takes `kubik params`' prompt, model and device arguments and plans the same way
(params/cli.py), then prints ``explain()`` at the chosen verbosity.
"""
from __future__ import annotations

from ..params.cli import add_prompt_arguments, control_for_arguments, plan_for_arguments
from .explainer import VERBOSITIES, explain


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "explain", help="explain the settings chosen for a prompt",
        description="Analyse a prompt, choose settings, and explain every choice.")
    add_prompt_arguments(parser)
    parser.add_argument("--verbosity", default="standard", choices=VERBOSITIES,
                        help="minimal: one line ... technical: with sources (default standard)")
    parser.set_defaults(func=run_explain)


def run_explain(args) -> int:
    analysis, plan = plan_for_arguments(args)
    advice = control_for_arguments(args, analysis, plan)
    print(explain(analysis, plan, verbosity=args.verbosity, sections=[advice] if advice else []))
    return 0
