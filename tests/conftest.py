"""Shared pytest setup.

* The repository root goes first on ``sys.path`` so that the tests exercise this
  source tree even when an older ``wspace`` is installed, and so that ``pytest``
  works without ``PYTHONPATH=.``.
* ``WSPACE_HOME`` points at a temporary directory for the whole session: CLI runs
  (in-process or as subprocesses, which inherit the environment) record their
  Hydra runs there instead of littering the repository with ``.wspace/``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session", autouse=True)
def _wspace_home(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("wspace_home")
    old = os.environ.get("WSPACE_HOME")
    os.environ["WSPACE_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("WSPACE_HOME", None)
    else:
        os.environ["WSPACE_HOME"] = old


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tests on one intra-op thread: their tensors are small, so extra threads
    only add synchronization (and stall badly on a busy machine)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def zoo_reads(monkeypatch):
    """The batch size of every ``Zoo.weights`` call made during the test, in order."""
    from datasets_zoo import Zoo

    calls: list[int] = []
    original = Zoo.weights

    def spy(self, indices=None):
        calls.append(len(indices))
        return original(self, indices)

    monkeypatch.setattr(Zoo, "weights", spy)
    return calls
