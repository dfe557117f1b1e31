"""The numerics version: one name for everything that decides a record's numbers.

The task (targets, loss, post-processing), the training loops, the augmentations, the batch
streams, the metrics and the embedded data generation together decide every number a run
produces. Any change to them that moves a number, however little, bumps
:data:`NUMERICS_VERSION`; a test pins the value, so such a change cannot land unnoticed. Records
state the version they were computed under; tables never pool records of different versions,
and ``harness leaderboard reproduce`` says when a record's version is not this harness's.

A change confined to one kind of dataset bumps that dataset's version instead (a generator's, or
folder datasets' ``FOLDER_VERSION``: folder-2 drops predicted particles on printed marks, folder-3
gives each image of a resampling run a second look, folder-4 also probes at half the run's factor
and fine-tunes each labelled image at the factor its second look would reach, folder-5 sizes the
particles of the second look by their width rather than their equivalent diameter, folder-6 reads the
reference rows at the runs' working resolution and bins an image without a pixel size as its
metadata declares, folder-7 pretrains a resampling run's encoder at the labelled pool's working resolution,
folder-8 at its budget's, folder-9 scores neither side of print: a true particle on it is dropped as a
predicted one is): the dataset key
already keeps its records apart, and every other section stays current. A change to the task belongs
there only when it cannot act on embedded data (the second look, in prediction and in training, acts
only where a run resamples, which no embedded dataset does; a test pins that).

Records filed before the version was kept read as :data:`LEGACY_NUMERICS` ("0"): computed under
whatever the code was at their commit, comparable with each other only as far as their settings
say (the v4 section, for one, pools records of nine commits).
"""

from __future__ import annotations

#: Bump on any change that moves a number (see the module docstring); tests/test_numerics.py pins it.
NUMERICS_VERSION = "2"
LEGACY_NUMERICS = "0"
