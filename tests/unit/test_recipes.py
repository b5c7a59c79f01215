"""The README's fan-out and evaluation commands, parsed as written, run the measured recipes of gemma_embed/recipes.py
(their one place): nothing on those lines and nothing in the scripts' defaults departs from them."""

import re
import shlex

import pytest

from conftest import REPO
from launch import load_script
from gemma_embed.recipes import CORRECTION, FAN_OUT, TRAINED_CORRECTION, correction_recipe

README = (REPO / "README.md").read_text(encoding="utf-8")


def commands(script: str) -> list[list[str]]:
    """Every README command line that runs `python <script>` (continuation lines joined), as its arguments."""
    joined = re.sub(r"\\\n\s*", " ", README)
    found = [shlex.split(line.split("#")[0])[2:] for line in joined.splitlines()
             if line.strip().startswith(f"python {script} ")]
    assert found, f"the README has no `python {script}` command"
    return found


def test_the_readmes_decoder_evaluations_correct_at_the_recipe():
    from gemma_embed.eval.run import parser

    lines = [argv for argv in commands("train/evaluate.py") if "--decoder" in argv]
    assert lines
    for argv in lines:
        args = parser().parse_args(argv)
        expected = TRAINED_CORRECTION if args.corrector_model else CORRECTION
        assert correction_recipe(bool(args.corrector_model), args.rounds, args.corrector) == expected, argv


def test_the_readmes_fan_outs_run_the_fan_out_recipe():
    fan_out = load_script("fan_out")
    for argv in commands("train/fan_out.py"):
        args, recipe, settings = fan_out.parse(argv)
        if args.summarise:
            continue  # re-applies the keep rule with the thresholds it names
        assert recipe == FAN_OUT and settings == (TRAINED_CORRECTION if args.corrector_model else CORRECTION), argv


def test_overrides_go_over_the_recipe_and_a_bad_field_is_named():
    assert correction_recipe(rounds=3) == CORRECTION.update("rounds=3")
    assert correction_recipe(True, overrides="beam=2").beam == 2
    assert correction_recipe(True, overrides="beam=2").generated == TRAINED_CORRECTION.generated
    with pytest.raises(ValueError, match="bogus"):
        correction_recipe(overrides="bogus=1")
