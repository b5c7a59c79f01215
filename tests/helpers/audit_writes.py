"""Run a script under a Python audit hook that records, per process, every write-like file event under a folder:
files opened for writing, directories made, renames and removals. Used to show that only the main process writes
checkpoints and published folders.

    python tests/audit_writes.py FOLDER LOG script.py [args...]      -> LOG.<rank> lists the events of each rank
"""

import os
import runpy
import sys

folder, log, script, *args = sys.argv[1:]
folder = os.path.abspath(folder)
rank = os.environ.get("RANK", "0")
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def record(event: str, path) -> None:
    try:
        path = os.path.abspath(os.fsdecode(path))
    except TypeError:
        return
    if path.startswith(folder):
        with open(f"{log}.{rank}", "a") as f:  # outside the audited folder, so this open is not recorded
            f.write(f"{event} {path}\n")


def hook(event: str, payload) -> None:
    if event == "open":
        path, mode, flags = payload
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & WRITE_FLAGS)
        if writing and isinstance(path, (str, bytes, os.PathLike)):
            record(event, path)
    elif event in ("os.mkdir", "os.rename", "os.remove", "os.rmdir", "shutil.rmtree", "os.truncate"):
        record(event, payload[0])


sys.addaudithook(hook)
sys.argv = [script, *args]
runpy.run_path(script, run_name="__main__")
