"""Where the tests find the repository and the real benchmark datasets (../shared/data, or
$TSPRUNE_EDGE_SHARED_DATA)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TSPRUNE_EDGE_SHARED_DATA", REPO.parent / "shared" / "data"))
