"""Every option of every command says what it does (`--help` is the manual a CI author reads)."""

from __future__ import annotations

import click
import pytest

from audit.cli import cli


def walk(cmd: click.Command, path: tuple[str, ...] = ("audit",)):
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from walk(sub, (*path, name))


COMMANDS = list(walk(cli))


def test_the_tree_is_walked():
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {"audit run", "audit approve", "audit merge", "audit policy validate", "audit history"} <= names


@pytest.mark.parametrize("path, cmd", COMMANDS, ids=lambda x: " ".join(x) if isinstance(x, tuple) else "")
def test_every_option_and_command_has_help(path, cmd):
    assert (cmd.help or "").strip(), f"{' '.join(path)} has no docstring"
    missing = [p.opts[0] for p in cmd.params if isinstance(p, click.Option) and not (p.help or "").strip()]
    assert not missing, f"{' '.join(path)}: options without help: {', '.join(missing)}"
