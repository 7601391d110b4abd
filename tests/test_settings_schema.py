"""One schema for training settings (issue 26): reidkit.contracts.Setting declarations checked by one checker,
backbone settings checked against the backbone plugin, and ``train --set key=value`` as in ``expand``."""
from __future__ import annotations

import pytest

from reidkit.contracts import Setting
from reidkit.errors import ReidkitError
from reidkit.training.config import resolve_config, run_spec, validate_config
from tests.helpers import one_error_line, run_console


class ThirdPartyStrategy:
    """A strategy as a third party writes it: its own setting declared with a range."""

    defaults = {"epochs": 3, "alpha": 0.5, "mode": "fast"}
    settings_spec = {"alpha": Setting(float, "mixing weight", min=0, max=1), "mode": Setting(str, "how", choices=("fast", "slow"))}


def test_a_third_party_strategys_declarations_are_enforced():
    spec = run_spec(ThirdPartyStrategy)
    validate_config({"epochs": 3, "alpha": 0.25, "mode": "slow", "generated": []}, spec=spec)
    with pytest.raises(ReidkitError, match=r"setting 'alpha' from my.yaml: expected a number >= 0 and <= 1, got 1.5"):
        validate_config({"epochs": 3, "alpha": 1.5, "mode": "fast", "generated": []}, {"alpha": "my.yaml"}, spec)
    with pytest.raises(ReidkitError, match=r"setting 'mode' .* expected one of fast, slow"):
        validate_config({"epochs": 3, "alpha": 0.5, "mode": "medium", "generated": []}, spec=spec)
    # an undeclared setting takes its default's type
    with pytest.raises(ReidkitError, match=r"setting 'epochs' .* expected an integer, got 'three'"):
        validate_config({"epochs": "three", "alpha": 0.5, "mode": "fast", "generated": []}, spec=spec)


def test_common_settings_are_declared_once():
    spec = run_spec(ThirdPartyStrategy)
    assert spec["resize"].choices == ("pil-bilinear", "pil-bicubic", "cv2-bilinear")
    assert spec["num_workers"].nullable and spec["num_workers"].min == 0
    with pytest.raises(ReidkitError, match=r"setting 'keep_checkpoints' from option --keep-checkpoints: expected an integer >= 1"):
        resolve_config("cal", {}, {"keep_checkpoints": 0})


def test_a_mistyped_backbone_setting_is_one_line_naming_it_and_its_source():
    with pytest.raises(ReidkitError, match=r"unknown backbone setting\(s\) in run.yaml: embeding_dim \(backbone 'timm' takes: .*embedding_dim"):
        resolve_config("cal", {"backbone": {"embeding_dim": 512}}, {}, file_source="run.yaml")
    assert resolve_config("cal", {"backbone": {"embedding_dim": 512}}, {})["backbone"]["embedding_dim"] == 512


def test_train_set_options_reach_the_config():
    from reidkit.commands.train import set_options

    given = set_options(["warmup_factor=0.5", "milestones=[3, 5],sampler=bot", "backbone.pooling=gem", "backbone.model=resnet18"])
    assert given == {"warmup_factor": 0.5, "milestones": [3, 5], "sampler": "bot", "backbone": {"pooling": "gem", "model": "resnet18"}}
    config = resolve_config("cal", {}, given)
    assert config["milestones"] == [3, 5] and config["sampler"] == "bot"
    assert config["backbone"]["pooling"] == "gem" and config["backbone"]["bnneck_shift"] is True  # merged, not replaced


@pytest.mark.parametrize("args, expected", [
    (["--set", "sampler=random"], "setting 'sampler' from option --set sampler: expected one of cal, bot, multigallery, got 'random'"),
    (["--set", "backbone.embeding_dim=512"], "unknown backbone setting(s) in option --set backbone"),
    (["--set", "learning_rate=0.1"], "unknown setting(s) in option: learning_rate"),
])
def test_train_set_errors_are_one_line_before_anything_is_written(tmp_path, args, expected):
    out = tmp_path / "run"
    proc = run_console("train", str(tmp_path / "missing.h5"), "--plugin", "cal", "--out", str(out), *args)
    assert proc.returncode != 0
    assert expected in one_error_line(proc)
    assert not out.exists()
