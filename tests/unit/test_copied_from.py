"""A published folder holds only its own modeling and configuration file (loaded with `trust_remote_code=True`
alone), so a helper that the encoder's and the decoder's files both need is copied, transformers' way: the copy sits
directly below a `# Copied from <module>.<name>` line. These tests keep every copy identical to its original, and
every helper defined in both files of a pair marked as a copy."""

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAIRS = [  # (the original's file, the file holding copies)
    ("modeling_gemma_embed.py", "modeling_gemma_embed_decoder.py"),
    ("configuration_gemma_embed.py", "configuration_gemma_embed_decoder.py"),
]
MARKER = re.compile(r"^\s*# Copied from (\w+)\.([\w.]+)\s*$")


def definitions(source: str) -> dict[str, ast.AST]:
    """The functions, classes and assigned names of a module, by qualified name (`Class.method` inside classes)."""

    def walk(body, prefix):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found[prefix + node.name] = node
                if isinstance(node, ast.ClassDef):
                    walk(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, ast.Assign):
                found.update((prefix + t.id, node) for t in node.targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                found[prefix + node.target.id] = node

    found = {}
    walk(ast.parse(source).body, "")
    return found


def source_of(source: str, node: ast.AST) -> str:
    """The definition's source, its decorators included."""
    decorators = [ast.get_source_segment(source, d) for d in getattr(node, "decorator_list", [])]
    return "".join(f"@{d}\n" for d in decorators) + ast.get_source_segment(source, node)


def first_line(node: ast.AST) -> int:
    return min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])


def copy_mismatches(path: Path) -> list[str]:
    """What is wrong with the `# Copied from` markers of `path` (originals are read beside it): a marker not directly
    above a definition, an original that does not exist, or a copy that differs from its original."""
    source = path.read_text(encoding="utf-8")
    mine = definitions(source)
    starts = {first_line(node): (name, node) for name, node in mine.items()}
    problems = []
    for number, line in enumerate(source.splitlines(), start=1):
        marker = MARKER.match(line)
        if not marker:
            continue
        module, name = marker.groups()
        where = f"{path.name}:{number}"
        if number + 1 not in starts:
            problems.append(f"{where}: '# Copied from {module}.{name}' is not directly above a definition")
            continue
        copy_name, copy = starts[number + 1]
        original_path = path.parent / f"{module}.py"
        if not original_path.is_file():
            problems.append(f"{where}: {copy_name} is marked as copied from {module}.{name}, but there is no "
                            f"{original_path.name}")
            continue
        original_source = original_path.read_text(encoding="utf-8")
        original = definitions(original_source).get(name)
        if original is None:
            problems.append(f"{where}: {copy_name} is marked as copied from {module}.{name}, which does not exist")
        elif source_of(source, copy) != source_of(original_source, original):
            problems.append(f"{where}: {copy_name} differs from {module}.{name}, which it is marked as a copy of: "
                            f"copy the original over it (change the original, then copy it), so that both published "
                            f"files run the same code")
    return problems


def unmarked_duplicates(original: Path, copies: Path) -> list[str]:
    """Top-level names defined in both files whose definition in `copies` carries no `# Copied from` marker."""
    source = copies.read_text(encoding="utf-8")
    lines = source.splitlines()
    module = original.stem
    theirs = {n for n in definitions(original.read_text(encoding="utf-8")) if "." not in n}
    return [
        f"{copies.name}:{first_line(node)}: {name} is defined in {original.name} too: make it a copy of "
        f"{module}.{name} and mark it with '# Copied from {module}.{name}' directly above it (or rename it)"
        for name, node in definitions(source).items()
        if "." not in name and name in theirs and not name.startswith("__")
        and not (first_line(node) > 1 and MARKER.match(lines[first_line(node) - 2]))
    ]


@pytest.mark.parametrize("copies", sorted({c for _, c in PAIRS} | {o for o, _ in PAIRS}))
def test_every_marked_copy_is_identical_to_its_original(copies):
    problems = copy_mismatches(REPO / copies)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("original, copies", PAIRS)
def test_every_helper_in_both_files_is_a_marked_copy(original, copies):
    problems = unmarked_duplicates(REPO / original, REPO / copies)
    assert not problems, "\n".join(problems)


def test_the_decoder_carries_the_shared_helpers_as_marked_copies():
    source = (REPO / "modeling_gemma_embed_decoder.py").read_text(encoding="utf-8")
    marked = {m.group(2) for m in map(MARKER.match, source.splitlines()) if m}
    assert {"FP16_MESSAGE", "refuse_fp16", "wrap_with_lora", "init_linear_layers"} <= marked


def test_the_checker_catches_a_diverged_copy_and_a_stray_marker(tmp_path):
    (tmp_path / "origin.py").write_text(
        'LIMIT = 3\n\n\n@staticmethod\ndef helper(x):\n    return x + 1\n\n\nclass Box:\n    def size(self):\n'
        '        return 1\n', encoding="utf-8")
    same = ('# Copied from origin.LIMIT\nLIMIT = 3\n\n\n# Copied from origin.helper\n@staticmethod\ndef helper(x):\n'
            '    return x + 1\n\n\nclass Other:\n    # Copied from origin.Box.size\n    def size(self):\n'
            '        return 1\n')
    (tmp_path / "copy.py").write_text(same, encoding="utf-8")
    assert copy_mismatches(tmp_path / "copy.py") == []

    (tmp_path / "copy.py").write_text(same.replace("x + 1", "x + 2").replace("return 1", "return 2"), encoding="utf-8")
    problems = copy_mismatches(tmp_path / "copy.py")
    assert len(problems) == 2
    assert "copy.py:5: helper differs from origin.helper" in problems[0] and "copy the original" in problems[0]
    assert "Other.size differs from origin.Box.size" in problems[1]

    (tmp_path / "copy.py").write_text(same.replace("@staticmethod\n", ""), encoding="utf-8")
    assert "helper differs from origin.helper" in copy_mismatches(tmp_path / "copy.py")[0]  # a decorator dropped

    (tmp_path / "copy.py").write_text("# Copied from origin.helper\n\ndef helper(x):\n    return x + 1\n"
                                      "# Copied from origin.gone\ndef gone():\n    pass\n", encoding="utf-8")
    problems = copy_mismatches(tmp_path / "copy.py")
    assert "copy.py:1: '# Copied from origin.helper' is not directly above a definition" in problems[0]
    assert "gone is marked as copied from origin.gone, which does not exist" in problems[1]

    (tmp_path / "copy.py").write_text("LIMIT = 3\n\n\ndef own():\n    pass\n", encoding="utf-8")
    problems = unmarked_duplicates(tmp_path / "origin.py", tmp_path / "copy.py")
    assert len(problems) == 1 and "LIMIT is defined in origin.py too" in problems[0]
