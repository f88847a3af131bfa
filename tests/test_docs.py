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
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    missing = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                missing.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not missing, missing
