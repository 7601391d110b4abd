"""One example of each kind the reidkit-example plugin leaves out (docs/plugins.md walks through them):
a masker, a prompt source, a filter, a backbone and a training strategy."""
from reidkit import hookimpl


@hookimpl
def register_maskers(register):
    from reidkit_guide.masker import LowerHalfMasker

    register("lower-half", LowerHalfMasker)


@hookimpl
def register_prompt_sources(register):
    from reidkit_guide.prompts import OutfitListPrompts

    register("outfit-list", OutfitListPrompts)


@hookimpl
def register_filters(register):
    from reidkit_guide.filter import NotFlatFilter

    register("not-flat", NotFlatFilter)


@hookimpl
def register_backbones(register):
    from reidkit_guide.backbone import build_tiny_cnn

    register("tiny-cnn", build_tiny_cnn)


@hookimpl
def register_strategies(register):
    from reidkit_guide.strategy import SoftmaxStrategy

    register("softmax", SoftmaxStrategy)
