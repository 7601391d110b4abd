"""The demo end to end, reduced (--quick): every stage really runs and writes its results."""
import json

import pytest

from reidkit.cli import main


@pytest.mark.slow
def test_quick_demo_runs_the_whole_story(tmp_path, capsys):
    out = tmp_path / "demo"
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--quick", "--out", str(out), "--seeds", "0,1"])
    assert exc.value.code == 0
    printed = capsys.readouterr().out
    assert "without vs with generated data" in printed and "+ expansion" in printed and "±" in printed
    # the first seed's table comes as soon as that seed is evaluated, the mean over the seeds at the end
    first, mean = printed.find("(seed 0)"), printed.find("mean ± std over seeds 0, 1")
    assert 0 <= first < printed.find("seeds 1 follow") < mean
    summary = json.loads((out / "results.json").read_text())
    assert set(summary["models"]) == {"cal", "cal + refinement", "+ expansion", "+ expansion + refinement"}
    for metrics in summary["models"].values():
        assert set(metrics) == {"standard", "cc"} and all(0 <= m["mAP"] <= 1 for m in metrics.values())
    # each seed is its own run; the table shows their mean and spread
    assert summary["seeds"] == [0, 1] and set(summary["per_seed"]) == {"0", "1"}
    a, b = (summary["per_seed"][k]["+ expansion"]["cc"]["mAP"] for k in ("0", "1"))
    assert summary["models"]["+ expansion"]["cc"]["mAP"] == pytest.approx((a + b) / 2)
    assert summary["spread"]["+ expansion"]["cc"]["mAP"]["std"] == pytest.approx(abs(a - b) / 2 ** 0.5)
    assert (out / "runs" / "seed-1" / "expansion" / "model.safetensors").is_file()
    for name in ("contact_sheet.png", "cmc_standard.png", "cmc_cc.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = (out / "runs" / "seed-0" / "expansion" / "config.yaml").read_text()
    assert "strategy: progressive" in config and "base: cal" in config and "recolor-k2-s0" in config
    log = (out / "runs" / "seed-0" / "expansion" / "log.csv").read_text().splitlines()
    assert len(log) == 3 and int(log[1].split(",")[log[0].split(",").index("variant_pool")]) == 1
    # rerun: everything is reused, nothing retrained
    before = (out / "runs" / "seed-0" / "cal" / "model.safetensors").stat().st_mtime_ns
    with pytest.raises(SystemExit):
        main(["demo", "--quick", "--out", str(out), "--no-refine", "--seeds", "0"])
    assert (out / "runs" / "seed-0" / "cal" / "model.safetensors").stat().st_mtime_ns == before
