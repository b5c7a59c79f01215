"""The package's layers: each module imports only from layers below it (every import, at the top or inside a
function). text_metrics < data < encoder, losses, scores < loop < tasks (contrastive, decoder_task, corrector_task)
< scripts; evaluation beside training, never imported by it (the scores training logs live in scores, below both);
corrector < inverter < reformulate < bulk, beside training; nothing in the library imports a script of train/."""

import ast
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "gemma_embed"
TASKS = ("gemma_embed.contrastive", "gemma_embed.decoder_task", "gemma_embed.corrector_task")
# module (or package) -> what it must never import
FORBIDDEN = {
    # the loop pushes a published folder (publish.push) but renders no card: each task brings its own
    "gemma_embed.loop": TASKS + ("gemma_embed.eval", "gemma_embed.publish.card",
                                 "gemma_embed.corrector", "gemma_embed.fanout"),
    "gemma_embed.losses": TASKS + ("gemma_embed.loop", "gemma_embed.eval", "gemma_embed.publish"),
    "gemma_embed.eval": TASKS + ("gemma_embed.loop", "gemma_embed.publish"),
    "gemma_embed.scores": TASKS + ("gemma_embed.loop", "gemma_embed.eval", "gemma_embed.publish"),
    # training never imports evaluation
    **{task: ("gemma_embed.eval",) for task in TASKS},
    "gemma_embed.data": TASKS + ("gemma_embed.loop", "gemma_embed.eval", "gemma_embed.publish",
                                 "gemma_embed.corrector", "gemma_embed.fanout"),
    "gemma_embed.corrector": TASKS + ("gemma_embed.loop", "gemma_embed.publish"),
    # the text metrics depend on nothing of ours
    "gemma_embed.text_metrics": ("gemma_embed",),
    # inversion and fan-out use a trained decoder; they train nothing and publish nothing
    "gemma_embed.inverter": TASKS + ("gemma_embed.loop", "gemma_embed.publish"),
    "gemma_embed.reformulate": TASKS + ("gemma_embed.loop", "gemma_embed.publish", "gemma_embed.bulk"),
    "gemma_embed.bulk": TASKS + ("gemma_embed.loop", "gemma_embed.publish"),
}


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"), path


@pytest.mark.parametrize("name,path", list(modules()), ids=lambda x: x if isinstance(x, str) else "")
def test_no_module_imports_from_a_layer_above_it(name, path):
    found = imports(path)
    assert not any(m.split(".")[0] in ("train", "demo_lib") for m in found), f"{name} imports a script of train/"
    for layer, forbidden in FORBIDDEN.items():
        if name == layer or name.startswith(layer + "."):
            bad = sorted(m for m in found if any(m == f or m.startswith(f + ".") for f in forbidden))
            assert not bad, f"{name} imports {bad}"


def test_the_check_sees_imports_inside_functions(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from gemma_embed.publish.card import write_card\n")
    assert "gemma_embed.publish.card" in imports(path)
