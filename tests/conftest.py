import os
import sys
from pathlib import Path

# Set before anything imports huggingface_hub: a late setting retries hub lookups for a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# a developer's own site defaults and data folder must not change what the tests see
os.environ.pop("REIDKIT_CONFIG", None)
os.environ.pop("REIDKIT_DATA", None)

# Test the installed reidkit, as users get it: in the source tree adapters/ and plugins/
# are not yet under the reidkit namespace, so the repository root must not shadow it.
ROOT = Path(__file__).resolve().parent.parent
# pytest runs with --import-mode=append (pyproject), so the root goes last: `tests` still imports.
sys.path[:] = [p for p in sys.path if Path(p or os.getcwd()).resolve() != ROOT] + [str(ROOT)]
for name in [m for m in sys.modules if m == "reidkit" or m.startswith("reidkit.")]:
    if not Path(getattr(sys.modules[name], "__file__", "") or "").resolve().is_relative_to(ROOT / "reidkit"):
        continue
    del sys.modules[name]
