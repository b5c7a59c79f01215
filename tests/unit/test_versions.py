"""setup.cfg gives version ranges; scripts/setup.sh installs scripts/constraints.txt's exact set, which must be the
ranges' lower bounds, so that what CI tests is the oldest set a user may get."""

import configparser
import re

from conftest import REPO


def test_the_installed_set_is_the_lower_bounds_of_the_ranges():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    lines = cfg["options"]["install_requires"].splitlines() + cfg["options.extras_require"]["train"].splitlines()
    lower = {}
    for line in (line.split("#")[0].strip() for line in lines):
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([\w.]+)(,\s*<\s*[\w.]+)?", line)
        if match:
            lower[match.group(1).lower()] = match.group(2)
        assert "==" not in line, f"setup.cfg pins {line}: give a range (scripts/constraints.txt pins what CI tests)"
    pins = dict(line.split("==") for line in (REPO / "scripts/constraints.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    for name in ("transformers", "sentence-transformers", "peft"):
        assert lower[name] == pins[name], f"{name}: setup.cfg's lower bound {lower[name]}, CI installs {pins[name]}"
    assert "-c scripts/constraints.txt" in (REPO / "scripts/setup.sh").read_text()
