"""Explanations of prompt analyses and sampling plans, at four verbosity levels.

    from kubik_core.explain import explain
    print(explain(analysis, plan, verbosity="detailed"))

Other capabilities add parts through ``sections`` (see explainer.ExplainSection).
``kubik explain`` is cli.py.
"""
from .explainer import VERBOSITIES, ExplainSection, explain

__all__ = ["VERBOSITIES", "ExplainSection", "explain"]
