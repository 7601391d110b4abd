"""The small base classes plugin authors may start from: they keep what the engine builds them with and give the
optional defaults, but never stand in for a kind's required method (the contract still refuses a class without it)."""
from reidkit.contracts import refusal
from reidkit.generation.contracts import PluginBase, Verdict
from reidkit.training.contracts import StrategyBase


class NotDark(PluginBase):
    defaults = {"min_mean": 10.0}

    def judge(self, items, outputs, nonfinite):
        return [Verdict(bool(o.mean() >= self.settings["min_mean"]), "" if o.mean() >= self.settings["min_mean"] else "dark")
                for o in outputs]


class NoJudge(PluginBase):
    defaults = {"min_mean": 10.0}


class Tiny(StrategyBase):
    defaults = {"epochs": 2}

    def build_heads(self, feature_dim, num_classes, num_clothes, clothes_of_class):
        return None

    def loss(self, outputs, batch, epoch):
        return 0.0, {}


class NoLoss(StrategyBase):
    def build_heads(self, feature_dim, num_classes, num_clothes, clothes_of_class):
        return None


def test_a_plugin_base_subclass_registers_only_with_its_required_method():
    import numpy as np

    assert refusal("filters", "not-dark", NotDark) is None
    assert "'judge'" in refusal("filters", "no-judge", NoJudge)
    flt = NotDark({"min_mean": 10.0}, "cpu", store="the store")  # how the engine builds a filter
    assert (flt.settings, flt.device, flt.store) == ({"min_mean": 10.0}, "cpu", "the store")
    verdicts = flt.judge([None, None], [np.zeros((2, 2, 3)), np.full((2, 2, 3), 200)], [False, False])
    assert [v.kept for v in verdicts] == [False, True]


def test_a_strategy_base_subclass_needs_heads_and_loss_and_gets_the_rest():
    assert refusal("strategies", "tiny", Tiny) is None
    assert "'loss'" in refusal("strategies", "no-loss", NoLoss)
    strategy = Tiny({"epochs": 2, "lr": 1e-3})
    assert [strategy.lr_factor(e) for e in range(3)] == [1.0, 1.0, 1.0] and strategy.variant_limit(0, 4) is None
    assert strategy.settings["lr"] == 1e-3
