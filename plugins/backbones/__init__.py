"""Built-in backbones (registered through the public register hook of this kind)."""
from reidkit import hookimpl
# light: timm and torch are imported inside the factory; its named parameters are the backbone's settings
from reidkit.plugins.backbones.timm_backbone import build_timm_backbone


@hookimpl
def register_backbones(register):
    register("timm", build_timm_backbone)
