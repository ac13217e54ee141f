"""`v2s timed`: stage wall times from DVC's own output, and the command's exit code kept."""
from __future__ import annotations

import json
import sys

from pipeline.cli import main
from pipeline.report.timed import stage_times


def test_each_stage_lasts_until_the_next_one_starts():
    lines = [(10.0, "Running stage 'roi':\n"), (11.0, "> python -m stages.roi\n"),
             (40.0, "Running stage 'train_v2a@melspec_scratch':\n"), (41.0, "noise\n")]
    assert stage_times(lines, 100.0) == {"roi": 30.0, "train_v2a@melspec_scratch": 60.0}
    assert stage_times([(1.0, "nothing ran\n")], 2.0) == {}


def test_the_record_holds_the_command_its_exit_code_and_its_stages(tmp_path, capsys):
    script = "import sys, time; print(\"Running stage 'a':\"); time.sleep(0.2); print(\"Running stage 'b':\"); sys.exit(3)"
    out = tmp_path / "times.json"
    assert main(["timed", "--out", str(out), "--", sys.executable, "-c", script]) == 3
    record = json.loads(out.read_text())
    assert record["exit_code"] == 3 and record["command"][-1] == script
    assert set(record["stages"]) == {"a", "b"} and record["stages"]["a"] >= 0.2
    assert "Running stage 'b'" in capsys.readouterr().out  # the command's output is passed through
    assert main(["timed", "--out", str(out)]) == 2
