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

import shutil  # noqa: E402

import pytest  # noqa: E402

_FAILED_MODULES: set[str] = set()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        _FAILED_MODULES.add(item.module.__name__)
    return report


@pytest.fixture(scope="module", autouse=True)
def _free_module_temp_dirs(request, tmp_path_factory):
    """A passing module's temporary folders go when it ends: its runs hold ResNet-50 checkpoints
    (about 250 MB each), and a whole suite kept to the end needs more disk than a CI machine may have."""
    base = tmp_path_factory.getbasetemp()
    before = set(base.iterdir())
    yield
    if request.module.__name__ in _FAILED_MODULES:
        return
    for path in set(base.iterdir()) - before:
        shutil.rmtree(path, ignore_errors=True)
