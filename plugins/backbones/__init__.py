"""Built-in backbones (registered through the public register hook of this kind)."""
from reidkit import hookimpl


def timm_backbone(**settings):
    """Any timm model by name (``model=``), with pooling, embedding size and BNNeck."""
    from reidkit.plugins.backbones.timm_backbone import build_timm_backbone

    return build_timm_backbone(**settings)


@hookimpl
def register_backbones(register):
    register("timm", timm_backbone)
