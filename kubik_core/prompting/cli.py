"""``kubik analyze``: prompt analysis from the command line.

``--json`` prints PromptAnalysis.to_dict(), a stable interface for scripts: at least
``segments`` ([text, weight] pairs as the dialect weighs them), ``concepts``, ``style``,
``style_confidence``, ``content_type``, ``complexity``, ``negative``, ``cleaned``, ``summary``,
``notes`` and ``source``. The output is strict JSON: weights that are not finite or beyond
+-100 (``(x:inf)``, ``(x:1e309)``, ``(x:nan)``) are clamped, with a note saying so.
"""
from __future__ import annotations

import json
import os
import sys
import textwrap

from ..common.commands import CommandError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "analyze", help="analyse a prompt: weights, concepts, style, complexity, negative prompt",
        description="Analyse a text-to-image prompt the way the Kubik Prompt Analyzer node does.")
    parser.add_argument("prompt", help="the prompt (quote it); '-' reads it from standard input")
    parser.add_argument("--dialect", default="comfyui", choices=("comfyui", "a1111"),
                        help="weighting syntax: ComfyUI's CLIPTextEncode or AUTOMATIC1111's webui")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed that resolves {a|b} and __wildcard__ choices (default 0)")
    parser.add_argument("--wildcards", metavar="DIR", default=None,
                        help="folder of wildcard .txt files for __name__")
    parser.add_argument("--ollama-url", default=None,
                        help="enrich with a local Ollama server, e.g. http://127.0.0.1:11434 "
                             "(another host only if KUBIK_OLLAMA_HOSTS lists it, or is *)")
    parser.add_argument("--ollama-model", default="llama3.2", help="Ollama model name")
    parser.add_argument("--ollama-timeout", type=float, default=10.0,
                        help="seconds to wait for Ollama before falling back to the rules")
    parser.add_argument("--json", action="store_true", help="print the analysis as JSON")
    parser.set_defaults(func=_analyze)

    def one_line_error(message: str):
        """A bad argument is one line and exit status 2, like every other error of the command
        (argparse would print the whole usage block first)."""
        parser.exit(2, f"kubik analyze: error: {message} (kubik analyze --help lists the "
                       "options)\n")

    parser.error = one_line_error


def _analyze(args) -> int:
    from . import OllamaConfig, OllamaConfigError, PromptError, analyze_prompt

    text = _read_prompt(args.prompt)
    if args.wildcards is not None and not os.path.isdir(args.wildcards):
        raise CommandError(f"--wildcards: no folder {args.wildcards!r}; give the folder that "
                           "holds your wildcard .txt files")
    ollama = None
    if args.ollama_url:
        ollama = OllamaConfig(args.ollama_url, args.ollama_model, args.ollama_timeout)
    try:
        analysis = analyze_prompt(text, args.dialect, args.seed, args.wildcards, ollama)
    except OllamaConfigError as exc:
        raise CommandError(f"--ollama-{exc.field}: {exc}") from None
    except PromptError as exc:
        raise CommandError(str(exc)) from None
    if args.json:
        data = analysis.to_dict()
        try:  # strict JSON: every number in an analysis is finite
            print(json.dumps(data, ensure_ascii=False, indent=2, allow_nan=False))
        except UnicodeEncodeError:  # a terminal that cannot show some characters
            print(json.dumps(data, indent=2, allow_nan=False))
    else:
        report = format_report(analysis)
        try:
            print(report)
        except UnicodeEncodeError:
            encoding = getattr(sys.stdout, "encoding", None) or "ascii"
            print(report.encode(encoding, "backslashreplace").decode(encoding))
    return 0


def _read_prompt(argument: str) -> str:
    """The prompt argument, or standard input for '-', as UTF-8 text within MAX_PROMPT_CHARS."""
    from . import MAX_PROMPT_CHARS

    if argument != "-":
        # bytes that are not UTF-8 reach Python as lone surrogates; no text encoder takes them
        try:
            argument.encode("utf-8")
        except UnicodeEncodeError:
            raise CommandError("the prompt is not valid UTF-8 text") from None
        return argument
    too_long = CommandError(f"the prompt on standard input is longer than "
                            f"{MAX_PROMPT_CHARS:,} characters")
    data = sys.stdin.buffer.read(4 * MAX_PROMPT_CHARS + 1)  # UTF-8: at most 4 bytes a character
    if len(data) > 4 * MAX_PROMPT_CHARS:
        raise too_long
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CommandError(f"standard input is not UTF-8 text (byte {exc.start}); save the "
                           "prompt as UTF-8") from None
    if len(text) > MAX_PROMPT_CHARS:
        raise too_long
    return text


def format_report(analysis) -> str:
    """A readable multi-line report of an analysis."""
    wrap = textwrap.TextWrapper(width=100, subsequent_indent="    ")
    lines = [f"Style:        {analysis.style} (confidence {analysis.style_confidence:.2f})",
             f"Content:      {analysis.content_type}",
             f"Source:       {analysis.source}",
             "Complexity:   " + ", ".join(f"{k} {v:.2f}" for k, v in analysis.complexity.items()),
             "Concepts:"]
    for category, phrases in analysis.concepts.items():
        if phrases:
            lines.append(wrap.fill(f"  {category}: {', '.join(phrases)}"))
    lines.append("Segments:")
    for text, weight in analysis.segments[:40]:
        lines.append(f"  {weight:6.3f}  {text!r}")
    if len(analysis.segments) > 40:
        lines.append(f"  ... {len(analysis.segments) - 40} more")
    if analysis.embeddings:
        lines.append("Embeddings:   " + ", ".join(analysis.embeddings))
    if analysis.structure:
        s = analysis.structure
        lines.append(f"A1111:        {len(s['and_parts'])} AND part(s), {s['breaks']} BREAK(s), "
                     f"{len(s['schedules'])} schedule(s), {len(s['alternations'])} alternation(s),"
                     f" weights at step {s['step']} of {s['steps']}")
    lines.append(wrap.fill("Positive:     " + analysis.cleaned))
    lines.append(wrap.fill("Negative:     " + analysis.negative))
    for note in analysis.notes:
        lines.append(wrap.fill("Note:         " + note))
    lines.append(wrap.fill("Summary:      " + analysis.summary))
    return "\n".join(lines)
