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


def test_split_modules_find_every_old_name_in_its_new_home():
    code = (
        "import importlib, warnings\n"
        "warnings.simplefilter('error')\n"
        "try:\n"
        "    import invfast.training\n"
        "except DeprecationWarning as w:\n"
        "    assert 'invfast.neurons.training' in str(w), w\n"
        "else:\n"
        "    raise AssertionError('no warning')\n"
        "warnings.simplefilter('ignore')\n"
        "import invfast.training as old, invfast.report as rep, invfast.p3_training as p3t\n"
        "import invfast.analysis as ana, invfast.p3_data as p3d\n"
        "from invfast.neurons import paradigm, calibration, training, report, tau\n"
        "from invfast.core.runtime import distributed, outputs\n"
        "assert old.paradigm_mask is paradigm.paradigm_mask\n"
        "assert old.calibrate is calibration.calibrate\n"
        "assert old.TrainConfig is training.TrainConfig\n"
        "assert old.write_json_atomic is outputs.write_json\n"
        "assert old.distributed_from_env() == distributed.Distributed()\n"
        "assert rep.write_report is report.write_report and ana.select_tau is tau.select_tau\n"
        "assert callable(p3t.checkpoint_eval_data) and callable(p3d.standardizer)\n"
        "try:\n"
        "    old.nothing\n"
        "except AttributeError as e:\n"
        "    assert 'nothing' in str(e)\n"
        "print('ok')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"


def test_old_screening_helpers_warn():
    from invfast import screening
    from invfast.core.runtime.device import model_device

    with pytest.warns(DeprecationWarning, match="invfast.screening.model_device moved"):
        assert screening.model_device is model_device
