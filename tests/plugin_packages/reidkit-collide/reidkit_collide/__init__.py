from reidkit import hookimpl


class Impostor:
    name = "synthetic"
    summary = "claims a built-in name"


@hookimpl
def register_adapters(register):
    register("synthetic", Impostor)
