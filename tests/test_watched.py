"""The tests' command runner (tests/watched.py): no clock, only progress, decides when a command hangs."""

from __future__ import annotations

import sys

import pytest
import watched

#: Uses ``seconds`` of CPU, printing nothing: progress by CPU alone.
BUSY = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end:\n    pass\n"


def test_a_command_busy_longer_than_the_stall_limit_runs_to_its_end() -> None:
    done = watched.run([sys.executable, "-c", BUSY.format(seconds=3) + "print('done')"], stall_s=1.0)
    assert done.returncode == 0 and done.stdout == "done\n"


def test_a_command_that_makes_no_progress_is_stopped() -> None:
    with pytest.raises(watched.Stalled, match="no progress for 1 s"):
        watched.run([sys.executable, "-c", "import time; time.sleep(600)"], stall_s=1.0)


def test_output_counts_as_progress_and_failures_are_returned() -> None:
    script = "import sys, time\nfor i in range(4):\n    print(i, flush=True); time.sleep(0.6)\nsys.exit(3)"
    done = watched.run([sys.executable, "-c", script], stall_s=1.0)
    assert done.returncode == 3 and done.stdout.split() == ["0", "1", "2", "3"]
