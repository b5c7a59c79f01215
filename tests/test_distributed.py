"""Two CPU processes (gloo) through `accelerate launch` compute the same loss and gradients as one process on the
same global batch, hard negatives included (and some rows without one), with and without GradCache."""

import pytest
import torch

from launch import accelerate_launch

pytestmark = pytest.mark.reliability  # many processes: hard negatives stay aligned across the gather


@pytest.fixture(scope="module")
def one_process(tiny_backbone, tmp_path_factory):
    out = tmp_path_factory.mktemp("dist") / "one.pt"
    run = accelerate_launch("tests/dist_equivalence.py", tiny_backbone, str(out), "0", processes=1)
    assert run.returncode == 0, run.stderr[-3000:]
    return torch.load(out)


@pytest.mark.parametrize("chunk", [0, 2])
def test_two_processes_equal_one(one_process, tiny_backbone, tmp_path, chunk):
    out = tmp_path / "two.pt"
    run = accelerate_launch("tests/dist_equivalence.py", tiny_backbone, str(out), str(chunk), processes=2)
    assert run.returncode == 0, run.stderr[-3000:]
    two = torch.load(out)
    assert one_process["processes"] == 1 and two["processes"] == 2
    torch.testing.assert_close(two["loss"], one_process["loss"], rtol=1e-5, atol=1e-6)
    assert two["grads"].keys() == one_process["grads"].keys()
    for name, grad in one_process["grads"].items():
        assert grad.abs().max() > 0, name
        torch.testing.assert_close(two["grads"][name], grad, rtol=1e-4, atol=1e-5, msg=name)
