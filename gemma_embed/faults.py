"""Fault injection for the crash and timeout tests: a run dies with SIGKILL at a named point, or the main process's
work is slowed down, when the environment asks for it.

    GEMMA_EMBED_KILL_AT_STEP=N          before training step N starts (loop.train)
    GEMMA_EMBED_KILL_IN_CHECKPOINT=N    after checkpoint step-N is written but before it is renamed into place
    GEMMA_EMBED_PAUSE_STORE_BUILD=S     sleep S seconds before building a token store (the main process's work)
    GEMMA_EMBED_PAUSE_EVAL=S            sleep S seconds before each evaluation during training

Unset (every normal run), `point` and `pause` do nothing.
"""

import os
import signal
import time


def point(name: str, step: int) -> None:
    """Die here if GEMMA_EMBED_KILL_<name> is `step`."""
    if os.environ.get(f"GEMMA_EMBED_KILL_{name}") == str(step):
        os.kill(os.getpid(), signal.SIGKILL)


def pause(name: str) -> None:
    """Sleep GEMMA_EMBED_PAUSE_<name> seconds, if set."""
    seconds = float(os.environ.get(f"GEMMA_EMBED_PAUSE_{name}", "0") or 0)
    if seconds > 0:
        time.sleep(seconds)
