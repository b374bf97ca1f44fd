"""Shared test configuration: the one ``requires_cuda`` marker and hypothesis profiles."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("thorough", deadline=None, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def _cuda_available() -> bool:
    from invfast.kernels import backends

    return backends.cuda_device_count()[0] > 0


def pytest_collection_modifyitems(config, items):
    if _cuda_available():
        return
    from invfast.kernels import backends

    reason = backends.cuda_device_count()[1]
    skip = pytest.mark.skip(reason=f"requires_cuda: {reason}")
    for item in items:
        if "requires_cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def cuda_device():
    import torch

    return torch.device("cuda", 0)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models and tensors: one thread is as fast, and immune to OpenMP spin-waiting
    when other processes share the cores. Use with ``pytest.mark.usefixtures``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
