"""Named size profiles shared by data and training: one name picks a whole run's scale.

- ``smoke``: seconds; for tests.
- ``quick``: minutes on a 2-core CPU for a whole run; the default.
- ``paper``: the source work's scale (25,000 unlabeled images at 640 px); needs a GPU.
"""

from __future__ import annotations

from typing import Literal

ProfileName = Literal["smoke", "quick", "paper"]
PROFILES: tuple[str, ...] = ("smoke", "quick", "paper")
DEFAULT_PROFILE: ProfileName = "quick"
