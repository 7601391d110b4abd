"""run_expand's phases: the run-shard lock is taken once the run's name is final; the store layer imports no generation."""
import ast
import os
from pathlib import Path

import pytest

import reidkit
from reidkit.generation import run_expand
from reidkit.store.lock import acquire, lock_path
from tests.helpers import make_world, one_error_line, run_cli, run_console

TINY = ["--set", "width=32", "--set", "height=64", "--set", "steps=2"]  # the tiny pipeline's size, 2 DDIM steps


def test_the_store_layer_imports_no_generation_module():
    # the layer order is store < generation: an import back up makes a circle (lock.py once recomputed run names)
    found = []
    for path in sorted((Path(reidkit.__file__).parent / "store").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            found += [f"{path.name}: {n}" for n in names if n.startswith("reidkit.generation")]
    assert found == []


@pytest.fixture(scope="module")
def guided(tmp_path_factory):
    """A store with a plain dlcr run under the default name, a discriminator trained on it (1 epoch), the tiny pipeline."""
    from tests.tiny_models import build_tiny_inpaint_pipeline

    d = tmp_path_factory.mktemp("locks")
    sd = build_tiny_inpaint_pipeline(d / "tiny-sd")
    store = make_world(d / "w.h5", ids=4, outfits=2, cameras=2)
    plain = run_expand(store, generator="dlcr", generator_settings={"model": str(sd), "width": 32, "height": 64, "steps": 2},
                       variants=1, device="cpu", show_progress=False, prompts="templates", masker="store", batch_size=4)
    assert plain["run"] == "dlcr-train-k1-s0" and plain["generated"] > 0
    disc = d / "disc"
    r = run_cli("discriminator", "train", store, "--run", plain["run"], "--out", disc, "--model", sd, "--epochs", "1",
                "--device", "cpu", "--batch-size", "4", "--set", "channels=[16,32]", "--set", "time_dim=16",
                "--set", "width=32", "--set", "height=64")
    assert r.exit_code == 0, r.output
    return store, sd, disc, plain["run"]


def test_plain_and_guided_dlcr_runs_of_one_store_lock_apart_and_one_run_still_excludes(guided):
    store, sd, disc, plain = guided
    expand = ["expand", store, "--generator", "dlcr", "--prompts", "templates", "--masker", "store", "--model", sd,
              "--device", "cpu", "--variants", "1", "--batch-size", "4", *TINY, "--set", f"discriminator={disc}"]
    runs = store.parent / (store.name + ".parts") / "runs"
    # this process holds the plain run's lock, as a plain pass being written does; the guided pass (another
    # process, its default name the plain one plus the provenance digest) is another run and must proceed
    held = acquire(store, "a running plain dlcr expand", key=f"runs.{plain}.all")
    try:
        r = run_console(*expand, "--limit", "2", timeout=600)
    finally:
        held.release()
    assert r.returncode == 0, r.stderr
    [guided_name] = [p.name for p in runs.iterdir() if p.name != plain]
    assert guided_name.startswith(plain + "-") and len(guided_name) == len(plain) + 9  # "-" and an 8-digit hash
    assert len(reidkit.open_store(store).run(guided_name)) == 2
    # ... while a second writer of that same guided run is refused in the one line, naming the run it would write
    held = acquire(store, "a running guided dlcr expand", key=f"runs.{guided_name}.all")
    try:
        r = run_console(*expand, "--limit", "3", timeout=600)
    finally:
        held.release()
    assert one_error_line(r) == (f"Error: generated run '{guided_name}' (chunks 'all') of {store} is being written by "
                                 f"another reidkit process (pid {os.getpid()}); expected one writer at a time (wait for "
                                 "it to finish, or stop it)")
    assert len(reidkit.open_store(store).run(guided_name)) == 2  # the refused one added nothing
    assert not lock_path(store, f"runs.{guided_name}.all").exists() and not lock_path(store, f"runs.{plain}.all").exists()
