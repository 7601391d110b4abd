"""The demo end to end, reduced (--quick): every stage really runs and writes its results."""
import json

import pytest

from reidkit.cli import main


@pytest.mark.slow
def test_quick_demo_runs_the_whole_story(tmp_path, capsys):
    out = tmp_path / "demo"
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--quick", "--out", str(out)])
    assert exc.value.code == 0
    printed = capsys.readouterr().out
    assert "without vs with generated data" in printed and "+ expansion" in printed
    summary = json.loads((out / "results.json").read_text())
    assert set(summary["models"]) == {"cal", "cal + refinement", "+ expansion", "+ expansion + refinement"}
    for metrics in summary["models"].values():
        assert set(metrics) == {"standard", "cc"} and all(0 <= m["mAP"] <= 1 for m in metrics.values())
    for name in ("contact_sheet.png", "cmc_standard.png", "cmc_cc.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = (out / "runs" / "expansion" / "config.yaml").read_text()
    assert "plugin: progressive" in config and "base: cal" in config and "recolor-k2" in config
    log = (out / "runs" / "expansion" / "log.csv").read_text().splitlines()
    assert len(log) == 3 and int(log[1].split(",")[log[0].split(",").index("variant_pool")]) == 1
    # rerun: everything is reused, nothing retrained
    before = (out / "runs" / "cal" / "model.safetensors").stat().st_mtime_ns
    with pytest.raises(SystemExit):
        main(["demo", "--quick", "--out", str(out), "--no-refine"])
    assert (out / "runs" / "cal" / "model.safetensors").stat().st_mtime_ns == before
