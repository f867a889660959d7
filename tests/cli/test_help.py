"""Help texts: literal brackets survive rich markup, and flags show no ``<bool>`` type as if they took a value."""

from __future__ import annotations

import pytest
import typer

from .clirun import run_cli


def _commands() -> list[list[str]]:
    from hpsearch.cli import app

    root = typer.main.get_command(app)
    paths: list[list[str]] = [[]]
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        paths.append([name])
        paths.extend([name, sub] for sub in getattr(command, "commands", {}))
    return paths


def test_every_help_page_shows_flags_without_a_type(capsys: pytest.CaptureFixture[str]) -> None:
    pages = _commands()
    assert ["study", "rename"] in pages and ["promote"] in pages
    for path in pages:
        code, out, err = run_cli([*path, "--help"], capsys)
        assert code == 0, (path, err)
        assert "<bool>" not in out, path
        assert "--help" in out, path


def test_brackets_in_help_are_printed(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["promote", "--help"], capsys)
    text = " ".join(out.replace("│", " ").split())
    assert code == 0
    assert "(default: [promote] epochs, else max_epochs)" in text
    assert "(default: [promote] on)" in text
    assert "<int>" in text  # options that take a value keep their type
