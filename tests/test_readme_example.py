"""README's worked example, run verbatim on the synthetic world: the expansion must raise clothes-changing rank-1 over CAL.

The example's block is read from README.md and run as it is by bash, in a
fresh folder where `.venv` points at the environment running the tests (so
its first line, `. .venv/bin/activate`, works unchanged). Nothing is scaled
down: this is the same story the demo tells for one seed (a few minutes on
two cores).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def worked_example() -> str:
    """The indented shell block under '## A worked example', as one script."""
    text = README.read_text().split("## A worked example", 1)[1]
    lines, started = [], False
    for line in text.splitlines():
        if line.startswith("    "):
            started = True
            lines.append(line[4:])
        elif started and line.strip():
            break
    assert lines and lines[0].startswith(". .venv/bin/activate"), lines[:2]
    return "\n".join(lines) + "\n"


def cc_rank1(cwd: Path, checkpoint: str) -> float:
    proc = subprocess.run(["reidkit", "eval", "world.h5", "--checkpoint", checkpoint, "--protocol", "cc", "--json"],
                          cwd=cwd, capture_output=True, text=True, env=_env(cwd), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)[0]["rank1"]


def _env(cwd: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("REIDKIT_CONFIG", "REIDKIT_DATA")}
    env["PATH"] = f"{cwd / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.mark.slow
def test_worked_example_runs_as_written_and_the_expansion_helps_cc(tmp_path):
    (tmp_path / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    script = worked_example()
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          env=_env(tmp_path), timeout=3000)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not [line for line in proc.stderr.splitlines() if line.startswith("Warning: setting")]  # the schedule fits
    for name in ("world.png", "sheet.png", "cmc.png", "report.html", "runs/cal/model.safetensors", "runs/cal-dlcr/model.safetensors"):
        assert (tmp_path / name).is_file(), name
    cal, expanded = cc_rank1(tmp_path, "runs/cal"), cc_rank1(tmp_path, "runs/cal-dlcr")
    print(f"cc rank-1: cal {cal:.3f}, cal + expansion {expanded:.3f}")
    assert expanded > cal
