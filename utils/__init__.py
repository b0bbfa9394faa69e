"""Helpers shared by every part of the project, one module per job.

- :mod:`utils.cli`: the command-line tools' convention (one-line errors, exit statuses, signals)
- :mod:`utils.files`: atomic writes, stale temporaries, regular-file checks, what an output may replace
- :mod:`utils.light_imports`: CompressAI, timm and SciPy's statistics imported by the parts used
- :mod:`utils.padding`: padding images to the multiples of 128 TCM needs, and back
- :mod:`utils.process`: process tuning (memory reuse) and device waits
- :mod:`utils.provenance`: what produced a result (commit, versions, device)

None of them imports torch or CompressAI at load time (the functions that need
them import them when called), so that light commands start in a fraction of a second.
"""

from pathlib import Path

#: The project's root folder (the checkout).
ROOT = Path(__file__).resolve().parent.parent
