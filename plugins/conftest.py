"""What every method plugin's tests share: no hub downloads, one intra-op thread.

Set here once (pytest reads this file before any plugin's test module imports timm or lightly),
not in each plugin; a third-party plugin's own tests get the same from :mod:`harness.testing`
(``single_thread``) and ``HF_HUB_OFFLINE=1`` in their CI.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # test models are tiny: a second OpenMP thread only adds barriers (harness.testing.single_thread)
    from harness.testing import single_thread

    with single_thread():
        yield
