"""CI (.ci/run) runs exactly the commands the README gives for the test suite, so the README's timings and
promises are what CI checks; then the jax and torch backend jobs (.ci/backends), whose tests must exist."""

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
    backends = [line for line in ci if line.startswith("step ") and ".ci/backends jax torch" in line]
    chaos = [line for line in ci if "-m chaos" in line and "tests/test_chaos.py" in line]
    assert slow and backends and chaos
    assert "IN_PLACE=1" in backends[0]
    # Order: the README command, then the slow step, then the jax and torch jobs, then the chaos test.
    assert ci.index(main[0]) < ci.index(slow[0]) < ci.index(backends[0]) < ci.index(chaos[0])
    assert "set -euo pipefail" in ci  # a failing step fails CI


def test_the_backend_jobs_name_tests_that_exist() -> None:
    """Every test in .ci/backends' list is still defined where it names it (the job itself fails on a missing
    id, but only when it runs: this says so in the default step)."""
    text = (REPO / ".ci" / "backends").read_text()
    listed = re.findall(r'^\s+"(tests/[^"]+)"$', text, flags=re.M)
    assert len(listed) >= 5, listed
    for test in listed:
        path, _, name = test.partition("::")
        assert (REPO / path).is_file(), test
        assert not name or re.search(rf"^def {re.escape(name)}\(", (REPO / path).read_text(), flags=re.M), test
