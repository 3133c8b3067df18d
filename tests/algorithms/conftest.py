"""Run torch single-threaded in these tests (restored afterwards).

On a shared 2-core machine torch's default intra-op thread pool spins against the other
processes: the tiny tabular models of these tests ran 20x slower with 2 threads than with 1.
"""

import pytest


@pytest.fixture(autouse=True, scope="module")
def _torch_single_thread():
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
