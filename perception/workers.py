"""Worker processes for data work (loader workers, episode drivers): forkserver, preloaded.

Not fork: a forked child can inherit OpenCV's or torch's thread-pool locks mid-use and hang on
them. A forkserver child starts from a clean single-threaded process; the server imports
torch, OpenCV and the simulator once, so each worker (a loader's in every training stage, an
episode driver's) forks ready instead of importing them again for seconds.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import BaseContext

PRELOAD = ["perception.dataset", "perception.steering.demos"]


def worker_context() -> BaseContext:
    """The forkserver context, its server preloading `PRELOAD` (if it has not started yet)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context
