"""Fault injection for the crash tests: a run dies with SIGKILL at a named point when the environment asks for it.

    GEMMA_EMBED_KILL_AT_STEP=N          before training step N starts (loop.train)
    GEMMA_EMBED_KILL_IN_CHECKPOINT=N    after checkpoint step-N is written but before it is renamed into place

Unset (every normal run), `point` does nothing.
"""

import os
import signal


def point(name: str, step: int) -> None:
    """Die here if GEMMA_EMBED_KILL_<name> is `step`."""
    if os.environ.get(f"GEMMA_EMBED_KILL_{name}") == str(step):
        os.kill(os.getpid(), signal.SIGKILL)
