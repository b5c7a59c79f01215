"""Two CPU processes (gloo) through `accelerate launch` compute the same loss and gradients as one process on the
same global batch, hard negatives included (and some rows without one), with and without GradCache, with the
one-way and the symmetric loss."""

import pytest
import torch

from launch import accelerate_launch

pytestmark = pytest.mark.reliability  # many processes: hard negatives stay aligned across the gather


@pytest.fixture(scope="module")
def one_process(tiny_backbone, tmp_path_factory):
    """The one-process result for a symmetric flag, computed once per flag."""
    results = {}

    def get(symmetric: str):
        if symmetric not in results:
            out = tmp_path_factory.mktemp("dist") / "one.pt"
            run = accelerate_launch("tests/helpers/dist_equivalence.py", tiny_backbone, str(out), "0", symmetric, processes=1)
            assert run.returncode == 0, run.stderr[-3000:]
            results[symmetric] = torch.load(out)
        return results[symmetric]

    return get


@pytest.mark.parametrize("chunk,symmetric", [(0, "0"), (2, "0"), (0, "1"), (2, "1")])
def test_two_processes_equal_one(one_process, tiny_backbone, tmp_path, chunk, symmetric):
    out = tmp_path / "two.pt"
    run = accelerate_launch("tests/helpers/dist_equivalence.py", tiny_backbone, str(out), str(chunk), symmetric, processes=2)
    assert run.returncode == 0, run.stderr[-3000:]
    two = torch.load(out)
    one = one_process(symmetric)
    assert one["processes"] == 1 and two["processes"] == 2
    torch.testing.assert_close(two["loss"], one["loss"], rtol=1e-5, atol=1e-6)
    assert two["grads"].keys() == one["grads"].keys()
    for name, grad in one["grads"].items():
        assert grad.abs().max() > 0, name
        torch.testing.assert_close(two["grads"][name], grad, rtol=1e-4, atol=1e-5, msg=name)


def test_the_symmetric_flag_reaches_the_loss(one_process):
    assert not torch.isclose(one_process("1")["loss"], one_process("0")["loss"])
