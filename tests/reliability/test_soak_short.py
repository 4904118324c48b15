"""The soak script's short mode, as CI runs it: 20 s of mixed traffic over three fake models
with swaps, hang-ups and kills. Nothing may be lost or orphaned."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support import REPO


def test_a_short_soak_loses_nothing_and_orphans_nothing(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    argv = [sys.executable, str(REPO / "bench" / "soak.py"), "--seconds", "20", "--out", str(out)]
    argv += ["--kill-every", "4", "--seed", "7"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["lost"] == 0, report["lost_by_reason"]
    assert report["orphans"] == 0, report["orphan_pids"]
    assert report["unaccounted"] == 0 and report["final_check"]["leaked"] == 0
    # The faults really happened, and most requests were still answered.
    assert report["kills"] >= 2 and report["swaps"] >= 1, report
    assert report["abandoned"] >= 1 or not report["requests_by_kind"].get("hangup"), report
    assert report["answered"] > report["accepted"] / 2, report
    assert len(report["rss_mb"]) >= 10, "memory was sampled along the way"
