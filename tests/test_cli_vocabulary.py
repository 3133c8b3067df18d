"""One CLI vocabulary: every option of every command has help text that states its default
(or that it is required), and the option names shared between commands are spelled alike."""

import argparse

from dualgap.cli import build_parser


def _walk(parser: argparse.ArgumentParser, prefix: str = "dualgap"):
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, f"{prefix} {name}")


def _options(parser):
    for action in parser._actions:
        if action.option_strings and not isinstance(action, argparse._HelpAction):
            yield action


def test_every_option_has_help_with_its_default():
    missing = []
    for cmd, parser in _walk(build_parser()):
        for action in _options(parser):
            text = (action.help or "") % {"default": action.default}
            if "default" not in text and "required" not in text:
                missing.append(f"{cmd} {action.option_strings[0]}: {text!r}")
    assert not missing, "\n".join(missing)


def test_shared_option_names_are_spelled_alike():
    """Labelled: a spelling list, checked against the parsers (``--features-noise`` was once
    beside ``--feature-noise``)."""
    names = {opt for _, parser in _walk(build_parser()) for a in _options(parser)
             for opt in a.option_strings}
    assert "--feature-noise" in names
    for wrong in ("--features-noise", "--features-seed", "--output_dir", "--step_size"):
        assert wrong not in names


def test_report_and_run_default_to_the_same_instance():
    parser = build_parser()
    for cmd in (["report"], ["run", "caid"]):
        args = parser.parse_args(cmd)
        assert args.file is None
    helps = [a.help for cmd, p in _walk(parser) if cmd in ("dualgap report", "dualgap run caid")
             for a in p._actions if a.dest == "file"]
    assert len(helps) == 2 and helps[0] == helps[1] and "demo instance" in helps[0]


def test_docs_cli_lists_every_command_and_option():
    """docs/cli.md has a section per command listing each of its options: a new option must be
    added there (the failure names the section and the option)."""
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    sections = {}
    for block in text.split("\n## `")[1:]:
        title = block.split("`", 1)[0]
        sections[title] = block
    missing = []
    for cmd, parser in _walk(build_parser()):
        if cmd not in sections:
            missing.append(f"section '## `{cmd}`'")
            continue
        for action in _options(parser):
            if f"`{action.option_strings[0]}" not in sections[cmd]:
                missing.append(f"'{action.option_strings[0]}' in section '## `{cmd}`'")
    assert not missing, "docs/cli.md lacks: " + "; ".join(missing)
