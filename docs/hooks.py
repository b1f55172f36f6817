"""MkDocs hooks: the command-line page is generated from numlp's own argument parser, so that
it cannot drift from the code (``<!-- numlp-cli -->`` in a page becomes every command's help);
and ``mkdocs serve`` reuses executed notebooks, while ``mkdocs build`` always executes them."""

from __future__ import annotations

import argparse
import os

MARKER = "<!-- numlp-cli -->"

# The tutorials' kernels inherit this process's environment: a headless setting such as
# MPLBACKEND=Agg (CI has it) would keep their figures from being drawn into the pages.
os.environ.pop("MPLBACKEND", None)


def _commands(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def cli_reference() -> str:
    from numlp.cli import build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps help to the terminal width: fix it
    parser = build_parser()
    parts = ["## numlp", "", "```text", parser.format_help().rstrip(), "```", ""]
    for name, command in _commands(parser).items():
        if name == "sweep-show":
            name = "sweep show"
        inner = _commands(command)
        for sub_name, sub in inner.items() if inner else [(None, command)]:
            title = f"numlp {name}" + (f" {sub_name}" if sub_name else "")
            parts += [f"## {title}", "", "```text", sub.format_help().rstrip(), "```", ""]
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, cli_reference())
    return markdown


_COMMAND = {"name": "build"}


def on_startup(command: str, dirty: bool) -> None:
    _COMMAND["name"] = command


def on_config(config):
    """``mkdocs serve`` rebuilds on every save: it reuses the notebooks executed before (cached
    by their text, in .cache/mkdocs-jupyter) instead of training them all again. A build
    (CI, the tests) executes every notebook, so one that breaks breaks the build."""
    plugin = config.plugins.get("mkdocs-jupyter")
    if plugin is not None:
        plugin.config["cache"] = _COMMAND["name"] == "serve"
    return config
