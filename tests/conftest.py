import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from llmfleet.catalog import Catalog  # noqa: E402


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return Catalog()


def cli(*argv: str, cwd: str | Path | None = None, env: dict | None = None):
    """``llmfleet ARGV`` in a fresh process: (rc, stdout, stderr).

    Commands that load a pyinfra inventory import pyinfra_cli, whose import
    monkey-patches the process with gevent; done inside the test process after
    other tests started threads, that hangs or breaks later tests.
    """
    import os
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "llmfleet", *argv],
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, proc.stdout, proc.stderr
