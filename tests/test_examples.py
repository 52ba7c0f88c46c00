"""Every example command in every ``--help`` text and in the README parses with the real parser, names flags
that exist, and every ``key=value`` override names an existing recipe key (or protocol setting); every
recipe, suite and profile file an example names exists.

Mutation caught: an example that drifts from the code (the top-level help's ``data.frames=8``, a flag that was
renamed, a recipe file that was moved).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import shlex
import types
import typing
from pathlib import Path

import pytest

from ssl_video.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
PARSER = build_parser()


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name))


def _commands(text: str) -> list[str]:
    """The ``ssl-video ...`` command lines of a help text or shell block (continuations joined, trailing
    explanations, comments and redirections cut off)."""
    out, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if pending:
            line = f"{pending} {line}"
            pending = ""
        if not line.startswith("ssl-video "):
            continue
        if line.endswith("\\"):
            pending = line[:-1].strip()
            continue
        line = re.split(r"\s{2,}|\s+#|\s+>|\s+\(", line)[0]
        out.append(line)
    return out


def _help_examples():
    for path, parser in _walk(PARSER):
        for command in _commands(parser.epilog or ""):
            yield pytest.param(command, id=f"help:{' '.join(path) or 'top'}:{command[10:60]}")


def _readme_examples():
    for doc in ("README.md",):
        blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", (REPO / doc).read_text(), re.S)
        for block in blocks:
            for command in _commands(block):
                yield pytest.param(command, id=f"{doc}:{command[10:60]}")


def _parser_for(words: list[str]) -> argparse.ArgumentParser:
    parser = PARSER
    for word in words:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or word not in subs[0].choices:
            break
        parser = subs[0].choices[word]
    return parser


def _recipe_key_exists(key: str) -> bool:
    from ssl_video.recipe import Recipe

    tp: typing.Any = Recipe
    for part in key.split("."):
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = options[0]
            origin = typing.get_origin(tp)
        if origin is dict:
            return True  # free-form (encoder arguments)
        if not dataclasses.is_dataclass(tp):
            return False
        hints = typing.get_type_hints(tp)
        if part not in hints:
            return False
        tp = hints[part]
    return True


def _check(command: str) -> None:
    tokens = [t for t in shlex.split(command)[1:] if t != "..."]
    partial = "..." in command
    tokens = [t for t in tokens if not (t.startswith("[") or t.endswith("]"))]  # optional parts: [--shard i/n]
    parser = _parser_for(tokens)
    known = {opt for action in parser._actions for opt in action.option_strings}
    for token in tokens:
        if token.startswith("--"):
            assert token.split("=")[0] in known, f"{command}: no option {token}"
    for token in tokens:  # files the example names that ship with the repository
        if re.match(r"^(recipes|eval|slurm)/[^<>]+\.yaml$", token):
            assert (REPO / token).is_file(), f"{command}: {token} does not exist"
    if partial:
        return  # an elided command line: flags checked, the rest left to the reader
    try:
        args = PARSER.parse_args(tokens)
    except SystemExit as exc:  # argparse's exit on a parse error
        raise AssertionError(f"{command}: does not parse") from exc
    overrides = list(getattr(args, "overrides", None) or [])
    name = tokens[0] if tokens else ""
    if name in ("pretrain", "demo") or tokens[:2] == ["config", "show"]:
        for item in overrides:
            key = item.split("=", 1)[0]
            assert _recipe_key_exists(key), f"{command}: {key} is not a recipe key"
    elif name == "eval" and getattr(args, "protocol", None):
        from ssl_video.evaluation.protocols import get_protocol, settings_from_args

        protocol = get_protocol(args.protocol)
        if protocol.overrides_key is not None:  # recipe overrides (fine-tuning)
            for item in overrides:
                assert _recipe_key_exists(item.split("=", 1)[0]), f"{command}: {item} is not a recipe key"
        else:
            settings_from_args(protocol, {}, overrides)  # unknown settings keys raise


EXAMPLES = [*_help_examples(), *_readme_examples()]


def test_examples_were_found():
    assert len(EXAMPLES) > 60  # mutation: a change to _commands that silently finds nothing


@pytest.mark.parametrize("command", EXAMPLES)
def test_example(command):
    _check(command)


def test_the_checker_catches_a_wrong_key():
    with pytest.raises(AssertionError, match="data.frames is not a recipe key"):
        _check("ssl-video config show recipes/stica_tiny_synthetic.yaml data.frames=8")
    with pytest.raises(AssertionError, match="no option --splits"):
        _check("ssl-video pretrain recipes/stica_tiny_synthetic.yaml --splits 1")
