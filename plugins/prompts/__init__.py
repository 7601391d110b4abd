"""Built-in clothing prompt sources (registered through the public ``register_prompt_sources`` hook)."""
from reidkit import hookimpl


@hookimpl
def register_prompt_sources(register):
    from reidkit.plugins.prompts.templates import TemplatePrompts

    register("templates", TemplatePrompts)
