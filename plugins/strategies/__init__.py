"""Built-in strategies (registered through the public register hook of this kind)."""
from reidkit import hookimpl


@hookimpl
def register_strategies(register):
    # these modules import torch only inside methods
    from reidkit.plugins.strategies.baseline import BaselineStrategy
    from reidkit.plugins.strategies.cal import CalStrategy
    from reidkit.plugins.strategies.progressive import ProgressiveStrategy

    register("baseline", BaselineStrategy)
    register("cal", CalStrategy)
    register("progressive", ProgressiveStrategy)
    from reidkit.plugins.strategies.pretrain import PretrainStrategy  # noqa: E402  (Diffusion-ReID pre-training)
    register("pretrain", PretrainStrategy)
    from reidkit.plugins.strategies.cluster_contrast import ClusterContrastStrategy  # noqa: E402  (USL / UDA, methods.md 2.1)
    register("cluster-contrast", ClusterContrastStrategy)
