"""Old import paths keep working, with a DeprecationWarning, and give the same objects."""

import importlib
import subprocess
import sys

import pytest

from invfast import _moved


def test_old_module_names_warn_and_alias_the_new_module():
    # One fresh interpreter: an old name warns the first time it is imported.
    code = (
        "import importlib, warnings\n"
        f"moved = {_moved.MOVED!r}\n"
        "for old, target in moved.items():\n"
        "    with warnings.catch_warnings(record=True) as caught:\n"
        "        warnings.simplefilter('always')\n"
        "        module = importlib.import_module(old)\n"
        "    new = importlib.import_module(target)\n"
        "    assert module is new, (old, module, new)\n"
        "    assert new.__spec__.name == new.__name__ == target\n"
        "    texts = [str(w.message) for w in caught if w.category is DeprecationWarning]\n"
        "    assert any(t.startswith(f'{old} moved to {target}') for t in texts), (old, texts)\n"
        "print(len(moved))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str(len(_moved.MOVED))


def test_ops_is_the_kernels_namespace_without_a_warning(recwarn):
    ops = importlib.import_module("invfast.ops")
    kernels = importlib.import_module("invfast.kernels")
    assert ops is kernels
    assert callable(ops.neuron_max) and callable(ops.invariance_update)
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]


def test_attribute_access_on_the_package():
    import invfast

    with pytest.warns(DeprecationWarning, match="invfast.groups moved"):
        groups = invfast.groups
    assert groups is importlib.import_module("invfast.core.groups")
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        invfast.nothing  # noqa: B018
