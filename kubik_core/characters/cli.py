"""``kubik characters``: list, show, add, change, remove, import and export character presets.

The registry is the file ``--registry`` names, else the one registry.registry_path() finds
($KUBIK_CHARACTERS_FILE, else ~/.local/share/kubik/characters.json). To edit the presets a
ComfyUI uses, point it at ``<ComfyUI>/user/kubik/characters.json`` (or set
KUBIK_CHARACTERS_FILE for both). Reference pictures are names inside ComfyUI's input folder;
with ``--input-dir`` (or $KUBIK_INPUT_DIR) they must exist there.

``--json`` outputs: list: ``{"registry", "characters": [Character.to_dict() + {"example"}]}``;
show: ``Character.to_dict()`` (the form ``import`` reads back).
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

from ..common.commands import CommandError

_EDIT_HELP = {
    "lora": "a LoRA as NAME[:STRENGTH[:CLIP_STRENGTH]], NAME as in ComfyUI's LoRA list (repeat for more)",
    "trigger": "a trigger word or phrase (repeat for more)",
    "reference": "a reference picture, its name inside ComfyUI's input folder (repeat for more)",
}


def register(subparsers) -> None:
    p = subparsers.add_parser("characters", help="character presets: LoRAs, trigger words, prompts, references")
    p.add_argument("--registry", default=None, metavar="FILE",
                   help="registry file (default: $KUBIK_CHARACTERS_FILE, else ~/.local/share/kubik/"
                        "characters.json; ComfyUI's is <ComfyUI>/user/kubik/characters.json)")
    sub = p.add_subparsers(dest="characters_command", metavar="ACTION")
    sub.required = True

    ls = sub.add_parser("list", help="list the characters (and the examples that ship with the pack)")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=_cmd_list)

    show = sub.add_parser("show", help="show one character")
    show.add_argument("name")
    show.add_argument("--json", action="store_true", help="print its JSON (what `import` reads)")
    show.set_defaults(func=_cmd_show)

    add = sub.add_parser("add", help="add a character")
    add.add_argument("name", help="1-64 letters, digits, spaces and . ' ( ) + - _")
    _edit_args(add)
    add.set_defaults(func=_cmd_add)

    change = sub.add_parser("set", help="change fields of a character (a list option replaces the list)")
    change.add_argument("name")
    change.add_argument("--rename", default=None, metavar="NEW_NAME", help="give the character a new name")
    _edit_args(change)
    for what in ("loras", "triggers", "references", "threshold"):
        change.add_argument(f"--no-{what}", action="store_true", help=f"remove its {what}")
    change.set_defaults(func=_cmd_set)

    rm = sub.add_parser("remove", help="remove a character (its files are left alone)")
    rm.add_argument("name")
    rm.set_defaults(func=_cmd_remove)

    imp = sub.add_parser("import", help="add the characters of a JSON file (one character, a list, or a "
                                        "registry file)")
    imp.add_argument("file")
    imp.add_argument("--replace", action="store_true", help="replace characters of the same name")
    imp.set_defaults(func=_cmd_import)


def _edit_args(p) -> None:
    p.add_argument("--lora", action="append", default=None, metavar="NAME[:S[:C]]", help=_EDIT_HELP["lora"])
    p.add_argument("--trigger", action="append", default=None, metavar="WORDS", help=_EDIT_HELP["trigger"])
    p.add_argument("--style", default=None, help="style words added at the end of the positive prompt")
    p.add_argument("--positive", default=None, help="words always added to the positive prompt (appearance, outfit)")
    p.add_argument("--negative", default=None, help="the character's negative prompt")
    p.add_argument("--reference", action="append", default=None, metavar="PICTURE", help=_EDIT_HELP["reference"])
    p.add_argument("--threshold", type=float, default=None,
                   help="consistency threshold (0 to 1); `kubik consistency --character NAME --save-threshold` "
                        "calibrates and stores it")
    p.add_argument("--notes", default=None, help="free notes")
    p.add_argument("--input-dir", default=None, metavar="DIR",
                   help="ComfyUI's input folder: references must exist there (default: $KUBIK_INPUT_DIR)")


# ----------------------------------------------------------------------------- commands
def _cmd_list(args) -> int:
    from . import EXAMPLES

    registry = _load(args)
    if args.json:
        rows = [{**c.to_dict(), "example": False} for c in registry.characters]
        rows += [{**c.to_dict(), "example": True} for c in EXAMPLES]
        print(json.dumps({"registry": str(registry.path), "characters": rows}, indent=1, ensure_ascii=False))
        return 0
    print(f"registry: {registry.path}" + ("" if registry.path.exists() else " (not created yet)"))
    for character in registry.characters:
        print(_summary(character))
    for character in EXAMPLES:
        print(_summary(character) + "  [example, ships with KubikAI]")
    if not registry.characters:
        print("no character of your own yet: `kubik characters add NAME --lora FILE --trigger WORD ...`")
    return 0


def _cmd_show(args) -> int:
    from . import example

    character = example(args.name)
    if character is None:
        character = _call(lambda: _load(args).get(args.name))
    if args.json:
        print(json.dumps(character.to_dict(), indent=1, ensure_ascii=False))
        return 0
    print(character.name)
    for lora in character.loras:
        print(f"  LoRA       {lora.name} (model {lora.strength_model:g}, clip {lora.strength_clip:g})")
    rows = (("triggers", ", ".join(character.trigger_words)), ("positive", character.positive),
            ("style", character.style), ("negative", character.negative),
            ("references", ", ".join(character.references)),
            ("threshold", "" if character.threshold is None else f"{character.threshold:g}"),
            ("notes", character.notes))
    for label, value in rows:
        if value:
            print(f"  {label:<10} {value}")
    return 0


def _cmd_add(args) -> int:
    from . import Character, put

    fields = _fields(args)
    character = _call(lambda: Character.from_dict({"name": args.name, **fields}))
    with _editing(args) as registry:
        put(registry, character)
    print(f"added {character.name} to {_registry_path(args)}")
    return 0


def _cmd_set(args) -> int:
    from . import Character, example, put

    if example(args.name) is not None:
        raise CommandError(f"{args.name!r} ships with KubikAI and cannot be changed; add a character of "
                           "your own (`kubik characters show --json` gives its JSON to start from)")
    fields = _fields(args)
    for flag, key, empty in (("no_loras", "loras", []), ("no_triggers", "trigger_words", []),
                             ("no_references", "references", []), ("no_threshold", "threshold", None)):
        if getattr(args, flag):
            fields[key] = empty
    if args.rename is not None:
        fields["name"] = args.rename
    if not fields:
        raise CommandError("nothing to change: give at least one option (see `kubik characters set --help`)")
    with _editing(args) as registry:
        old = registry.get(args.name)
        changed = Character.from_dict({**old.to_dict(), **fields})
        if changed.name.casefold() != old.name.casefold():
            put(registry, changed)
            registry.characters.remove(old)
        else:
            put(registry, changed, replace=True)
    print(f"changed {changed.name}")
    return 0


def _cmd_remove(args) -> int:
    from . import example

    if example(args.name) is not None:
        raise CommandError(f"{args.name!r} ships with KubikAI and cannot be removed")
    with _editing(args) as registry:
        character = registry.get(args.name)
        registry.characters.remove(character)
    print(f"removed {character.name} (its LoRAs and pictures are left alone)")
    return 0


def _cmd_import(args) -> int:
    from ..common.bounded_json import BoundedJSONError
    from ..common.bounded_json import loads as bounded_loads
    from ..common.files import read_regular
    from . import Character, put
    from .registry import MAX_REGISTRY_BYTES, _characters

    try:
        raw = read_regular(args.file, MAX_REGISTRY_BYTES)
        data = bounded_loads(raw, max_depth=8, max_bytes=MAX_REGISTRY_BYTES)
    except FileNotFoundError:
        raise CommandError(f"{args.file}: no such file") from None
    except (OSError, BoundedJSONError) as exc:
        raise CommandError(f"{args.file}: {getattr(exc, 'strerror', None) or exc}") from None
    if isinstance(data, dict) and "characters" not in data:
        data = {"characters": [data]}
    elif isinstance(data, list):
        data = {"characters": data}
    characters: list[Character] = _call(lambda: _characters(data), prefix=f"{args.file}: ")
    with _editing(args) as registry:
        for character in characters:
            put(registry, character, replace=args.replace)
    print(f"imported {len(characters)} character(s): {', '.join(c.name for c in characters)}")
    return 0


# ----------------------------------------------------------------------------- pieces
def _registry_path(args) -> Path:
    from . import registry_path

    return Path(args.registry).expanduser() if args.registry else registry_path(None)


def _load(args):
    from . import load_registry

    return _call(lambda: load_registry(_registry_path(args)))


@contextmanager
def _editing(args):
    """registry.editing() on the registry file, its errors as CommandError (one line, status 2)."""
    from . import CharacterError, RegistryError, editing

    try:
        with editing(_registry_path(args)) as registry:
            yield registry
    except (CharacterError, RegistryError) as exc:
        raise CommandError(str(exc)) from None


def _call(fn, prefix: str = ""):
    """``fn()``, with the character package's errors as CommandError."""
    from . import CharacterError, RegistryError

    try:
        return fn()
    except (CharacterError, RegistryError) as exc:
        raise CommandError(f"{prefix}{exc}") from None


def _fields(args) -> dict:
    """The character fields the options give (only those given)."""
    fields = {}
    if args.lora is not None:
        fields["loras"] = [_lora_spec(spec) for spec in args.lora]
    if args.trigger is not None:
        fields["trigger_words"] = list(args.trigger)
    for key in ("style", "positive", "negative", "notes", "threshold"):
        if getattr(args, key) is not None:
            fields[key] = getattr(args, key)
    if args.reference is not None:
        fields["references"] = list(args.reference)
        _check_references_exist(args.reference, args.input_dir or os.environ.get("KUBIK_INPUT_DIR"))
    return fields


def _lora_spec(spec: str) -> dict:
    """NAME[:STRENGTH[:CLIP_STRENGTH]] as a LoRA dict; strengths are read from the right, so a
    name holding ':' still works."""
    parts = spec.split(":")
    numbers = []
    while len(parts) > 1 and len(numbers) < 2:
        try:
            numbers.insert(0, float(parts[-1]))
        except ValueError:
            break
        parts.pop()
    lora = {"name": ":".join(parts)}
    if numbers:
        lora["strength_model"] = numbers[0]
        lora["strength_clip"] = numbers[-1]
    return lora


def _check_references_exist(names: list[str], input_dir: str | None) -> None:
    from . import check_reference

    if not input_dir:
        return
    root = os.path.realpath(input_dir)
    for name in names:
        _call(lambda: check_reference(name))
        path = os.path.realpath(os.path.join(root, name))
        if os.path.commonpath([root, path]) != root or not os.path.isfile(path):
            raise CommandError(f"reference {name[:80]!r} is not a file in the input folder {input_dir}; "
                               "copy the picture there first")


def _summary(character) -> str:
    loras = ", ".join(f"{lora.name} {lora.strength_model:g}" for lora in character.loras) or "no LoRA"
    triggers = ", ".join(character.trigger_words) or "no trigger word"
    refs = f"{len(character.references)} reference(s)"
    threshold = "" if character.threshold is None else f", threshold {character.threshold:g}"
    return f"{character.name}: {loras}; {triggers}; {refs}{threshold}"
