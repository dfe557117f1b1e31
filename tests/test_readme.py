"""The README's two opening commands are exactly what CI runs, and they name real things."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block, "the README must open with a bash block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_two_commands_that_ci_runs_verbatim():
    commands = readme_commands()
    assert len(commands) == 2
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for command in commands:
        assert command in ci, f"CI does not run the README command {command!r}"
    assert "HF_HUB_OFFLINE=1" in (ROOT / ".ci" / "run").read_text()


def test_first_command_runs_an_installed_method_and_a_real_script():
    from harness.methods.registry import available_methods

    setup, main_job = readme_commands()[0].split(" && ")
    assert (ROOT / setup.split()[1]).is_file()
    method = re.search(r"--method (\S+)", main_job).group(1)
    assert method in available_methods()
