import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# converted pretrained weights (SmolLM2 from GGUF, EfficientNet from .pth) are shared with make run
os.environ.setdefault("RSMOE_CACHE", str(REPO / ".cache" / "rsmoe"))
SHARED_DATA = REPO.parent / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real RSICap / RSIEval annotation text (read-only) beside the repository."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"{SHARED_DATA} not found: the tests need ../shared/data beside the repository")
    return SHARED_DATA
