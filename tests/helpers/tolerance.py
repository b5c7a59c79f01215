"""How close two computations of the same quantity must be, by the precision the suite runs in: what
`mixed_precision: auto` resolves to on this machine, or what GEMMA_EMBED_PRECISION forces it to (CI runs the tests
marked `precision` a second time in the other precision).

float32. Two computations that group their sums differently (a batch of 8 against chunks of 3, one process against
two, a text encoded beside others) differ only by float32 rounding: unit roundoff 6e-8, over the tiny models' two
layers and sums of a few hundred terms. Measured: at most 1.2e-7 relative on a loss, 8e-7 of the largest gradient
entry. The bounds, 1e-5 relative on losses and 1e-4 relative (1e-5 absolute) on gradients, are the suite's
long-standing float32 ones.

bf16 autocast. Every matmul rounds its inputs and its output to bf16: 8 significant bits, one unit in the last
place (ulp) 2^-8 = 3.9e-3 relative. The same quantity computed with another grouping moves by about one ulp of the
largest terms that feed it, so a small entry of a tensor can move by much more than its own ulp. Measured on the
GradCache case (tests/unit/test_losses.py): gradients at most 3.5e-3 of the tensor's largest entry apart, losses
identical. The bounds are 4 ulps of the tensor's largest entry (2^-6 x max|expected|) absolute plus 2 ulps relative
for tensors, and 2 ulps relative for a scalar loss or a cosine. A real error stays far outside them: the control
in test_losses.py shows a temperature 10% off failing them.
"""

import torch

from gemma_embed.precision import resolve

PRECISION = resolve("auto", "cpu")  # the suite's precision (GEMMA_EMBED_PRECISION forces it)
BF16 = PRECISION.precision == "bf16"
BF16_ULP = 2.0 ** -8


def autocast():
    """The autocast the training loop and evaluation compute under, in the suite's precision."""
    return PRECISION.autocast("cpu")


def loss_tolerance() -> dict:
    """rtol/atol for a scalar (a loss, a cosine, a mean) computed twice with different groupings."""
    return dict(rtol=2 * BF16_ULP, atol=1e-6) if BF16 else dict(rtol=1e-5, atol=1e-6)


def assert_tensors_close(actual: torch.Tensor, expected: torch.Tensor, msg: str = "", atol32: float = 1e-5) -> None:
    """Two computations of a tensor (gradients, weights after training) agree within the precision's rounding
    (`atol32`: the absolute bound in float32, 1e-6 where the tensors are small)."""
    if BF16:
        scale = expected.abs().max().item()
        torch.testing.assert_close(actual, expected, rtol=2 * BF16_ULP, atol=4 * BF16_ULP * scale + 1e-6, msg=msg)
    else:
        torch.testing.assert_close(actual, expected, rtol=1e-4, atol=atol32, msg=msg)


def assert_scalars_close(actual, expected, msg: str = "") -> None:
    torch.testing.assert_close(torch.as_tensor(actual, dtype=torch.float64), torch.as_tensor(expected, dtype=torch.float64),
                               msg=msg, **loss_tolerance())
