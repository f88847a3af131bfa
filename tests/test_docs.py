"""The docs that must not go stale: the configuration reference is the schema's, and every relative
link in the README and the docs names a file that exists."""

import re
from pathlib import Path

from nofrog_core.config_reference import config_reference

ROOT = Path(__file__).resolve().parent.parent


def test_the_configuration_reference_is_the_schemas():
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert page == config_reference(), "docs/configuration.md differs from the schema: run " \
                                       "`nofrog config reference > docs/configuration.md`"


def test_every_key_has_a_meaning():
    rows = [line for line in config_reference().splitlines() if line.startswith("| `")]
    assert len(rows) > 100
    assert all(not line.rstrip().endswith("|  |") for line in rows), [r for r in rows if r.rstrip().endswith("|  |")]


def test_relative_links_in_the_readme_and_docs_exist():
    pages = [ROOT / "README.md", ROOT / "bench" / "results" / "INDEX.md", *sorted((ROOT / "docs").glob("*.md"))]
    missing = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                missing.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not missing, missing


def test_every_results_file_is_in_the_index_and_described():
    import importlib.util

    spec = importlib.util.spec_from_file_location("results_index", ROOT / "bench" / "results_index.py")
    results_index = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(results_index)
    files = results_index.results_files()
    assert set(files) == set(results_index.ENTRIES), (
        "describe in bench/results_index.py ENTRIES, then run it: "
        f"{sorted(set(files) ^ set(results_index.ENTRIES))}")
    index = (ROOT / "bench" / "results" / "INDEX.md").read_text()
    assert [f for f in files if f"[{f}]({f})" not in index] == [], "run python bench/results_index.py"


def schema_keys() -> set[str]:
    rows = [line for line in config_reference().splitlines() if line.startswith("| `")]
    return {row.split("`")[1] for row in rows}


def test_every_command_in_the_readme_parses():
    """Each `nofrog ...` the README shows names a real command whose options parse, and each `--set`
    key it sets is a key of the schema (the data paths in examples are the reader's own)."""
    import shlex

    from typer.testing import CliRunner

    from nofrog_flows.cli import app

    text = (ROOT / "README.md").read_text()
    # Command lines are the indented code lines; commands named in prose are in backticks.
    commands = [line.strip() for line in text.splitlines() if re.match(r"    (\.venv/bin/)?nofrog \w", line)]
    commands += [f"nofrog {name}" for name in re.findall(r"`nofrog ([a-z-]+)[ `]", text)]
    assert len(commands) >= 8, commands
    keys = schema_keys()
    for command in commands:
        args = shlex.split(command)[1:]
        sub = [a for a in args if not a.startswith("-")][:1]
        result = CliRunner().invoke(app, [*sub, "--help"])
        assert result.exit_code == 0, f"{command}: {result.output}"
        for option, value in zip(args, args[1:]):
            if option == "--set":
                key = value.split("=", 1)[0]
                assert key in keys, f"{command}: {key} is not a config key"
            elif option.startswith("--") and option not in ("--config", "--cron"):
                assert option in result.output, f"{command}: {option} is not an option of nofrog {sub[0]}"
