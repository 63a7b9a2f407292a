import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from llmfleet.catalog import Catalog  # noqa: E402


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return Catalog()
