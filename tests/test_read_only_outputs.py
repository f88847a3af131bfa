"""A read-only output directory is named, before the work, by every command that writes (issue:
reliability round two, 11). Root ignores permission bits, so as root the directory is made immutable."""

import os
import subprocess

import pytest
from typer.testing import CliRunner

from nofrog_flows.cli import app


@pytest.fixture
def read_only_dir(tmp_path):
    path = tmp_path / "read-only"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    made = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"as root, a read-only directory needs chattr +i: {made.stderr.decode().strip()}")
    yield path
    subprocess.run(["chattr", "-i", str(path)], check=True)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("command", [
    ["train", "--out", "{ro}/train"],
    ["train", "--out", "{ro}"],
    ["replay", "--out", "{ro}/replay"],
    ["demo-data", "--out", "{ro}"],
    ["run", "--set", "tracking.output_dir={ro}/runs"],
    ["run", "--set", "tracking.uri=sqlite:///{ro}/mlflow.db"],
])
def test_a_read_only_output_is_named_before_the_work(command, read_only_dir, tiny_overrides):
    args = [a.format(ro=read_only_dir) for a in command]
    # The user's overrides come last, as on a command line: their read-only paths win.
    sets = [x for o in tiny_overrides for x in ("--set", o)]
    result = invoke(*args[:1], *sets, *args[1:])
    assert result.exit_code == 2, result.output
    assert "cannot write" in result.output and str(read_only_dir) in result.output, result.output
    assert "Traceback" not in result.output
    assert not list(read_only_dir.iterdir())
