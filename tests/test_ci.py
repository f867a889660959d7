"""CI (.ci/run) runs exactly the commands the README gives for the test suite, so the README's timings and
promises are what CI checks."""

from __future__ import annotations

import re

from .conftest import REPO


def _readme_commands() -> list[str]:
    """The lines of the README's bash blocks that run pytest."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if "python -m pytest" in line]


def test_ci_runs_the_readme_test_command_verbatim_then_the_slow_and_chaos_steps() -> None:
    readme = _readme_commands()
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    main = [command for command in readme if command.startswith('pip install -e ".[dev]" && ruff check')]
    assert len(main) == 1, readme
    assert main[0] in ci
    assert "-n 2" in main[0] and "not slow" in main[0] and "not chaos" in main[0] and "--durations=10" in main[0]
    slow = [line for line in ci if "-m 'slow and not chaos'" in line]
    chaos = [line for line in ci if "-m chaos" in line and "tests/test_chaos.py" in line]
    assert slow and chaos
    # Order: the README command, then the slow step, then the chaos test.
    assert ci.index(main[0]) < ci.index(slow[0]) < ci.index(chaos[0])
