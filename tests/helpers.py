"""Shared test helpers: small stores and running the installed console script."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from reidkit.cli import cli

BIN = Path(sys.executable).parent


def reidkit_exe() -> str:
    """The installed console script next to this interpreter."""
    exe = BIN / "reidkit"
    return str(exe) if exe.exists() else shutil.which("reidkit")


def run_cli(*args, env=None, input=None):
    """Run the CLI in-process (click's CliRunner); returns the click Result."""
    runner = CliRunner()
    return runner.invoke(cli, [str(a) for a in args], env=env, input=input, catch_exceptions=False)


def run_console(*args, env=None, cwd=None, timeout=300):
    """Run the installed ``reidkit`` console script in a subprocess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([reidkit_exe(), *map(str, args)], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout)


def make_world(path, ids=6, outfits=2, cameras=3, shots=1, seed=0, extra=()):
    """A small synthetic store (written through the real adapt command)."""
    result = run_cli("adapt", "synthetic", "--out", path, "--ids", ids, "--outfits", outfits, "--cameras", cameras, "--shots", shots, "--seed", seed, *extra)
    assert result.exit_code == 0, result.output
    return Path(path)


def one_error_line(proc):
    """The single stderr line of a console run that failed with exit code 1 (and no traceback)."""
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]
