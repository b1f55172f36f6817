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


def test_the_readme_fits_on_a_screen_and_the_rest_is_in_the_site():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, len(lines)
    docs = README.parent / "docs"
    for page in ("guide.md", "research.md", "speed.md", "development.md"):
        assert f"(docs/{page})" in README.read_text(encoding="utf-8")
        assert (docs / page).is_file()


def test_mkdocs_serve_reuses_executed_notebooks_and_a_build_executes_them():
    import importlib.util

    spec = importlib.util.spec_from_file_location("hooks", README.parent / "docs" / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)

    class Plugin:
        config = {"cache": False}

    class Config:
        plugins = {"mkdocs-jupyter": Plugin()}

    for command, cached in (("serve", True), ("build", False)):
        hooks.on_startup(command=command, dirty=False)
        hooks.on_config(Config())
        assert Config.plugins["mkdocs-jupyter"].config["cache"] is cached
