"""Built-in clothing prompt sources (registered through the public ``register_prompt_sources`` hook)."""
from reidkit import hookimpl


@hookimpl
def register_prompt_sources(register):
    from reidkit.plugins.prompts.file_bank import FilePrompts
    from reidkit.plugins.prompts.llava_llama import LlavaLlamaPrompts
    from reidkit.plugins.prompts.templates import TemplatePrompts

    register("file", FilePrompts)
    register("llava-llama", LlavaLlamaPrompts)
    register("templates", TemplatePrompts)
