"""README's command list is checked against the real parser, so it cannot fall out of date."""

import argparse
import re
from pathlib import Path

from numlp.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands() -> dict[str, set[str]]:
    """``{"train": {"--epochs", ...}, "data import": {...}}`` from README's command block."""
    text = README.read_text(encoding="utf-8")
    block = text.split("## Command line", 1)[1].split("```", 2)[1]
    commands: dict[str, set[str]] = {}
    current = None
    for line in block.splitlines():
        line = line.split("#", 1)[0]
        match = re.match(r"numlp ((?:data |sweep )?[a-z]+)", line.strip())
        if match:
            current = match.group(1)
            commands.setdefault(current, set())
        if current:
            commands[current] |= set(re.findall(r"--[a-z][a-z0-9-]*", line))
    return commands


def parser_commands() -> dict[str, set[str]]:
    def subparsers(parser):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                return action.choices
        return {}

    def flags(parser):
        return {
            option
            for action in parser._actions
            for option in action.option_strings
            if option.startswith("--") and option != "--help"
        }

    found = {}
    for name, parser in subparsers(build_parser()).items():
        name = name.replace("sweep-show", "sweep show")  # `numlp sweep show` is parsed apart
        inner = subparsers(parser)
        for sub, subparser in inner.items():
            found[f"{name} {sub}"] = flags(subparser)
        if not inner:
            found[name] = flags(parser)
    return found


def test_readme_lists_every_command_and_every_flag_the_parser_has():
    readme, parser = readme_commands(), parser_commands()
    parser.pop("bench")  # its flags belong to the benchmark's own parser, listed apart
    readme.pop("bench", None)
    assert sorted(readme) == sorted(parser)
    for command, flags in parser.items():
        assert readme[command] == flags, command
