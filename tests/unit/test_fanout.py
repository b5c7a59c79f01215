import pytest
import torch
import torch.nn.functional as F

from gemma_embed.fanout import NearestNeighbourDecoder, fan_out, interpolate


@pytest.mark.parametrize("mode", ["linear", "slerp"])
def test_interpolation_stays_on_the_sphere_and_moves_monotonically(mode):
    g = torch.Generator().manual_seed(0)
    a, b = F.normalize(torch.randn(16, generator=g), dim=0), F.normalize(torch.randn(16, generator=g), dim=0)
    path = interpolate(a, b, 7, mode)
    assert path.shape == (7, 16)
    torch.testing.assert_close(path.norm(dim=1), torch.ones(7))
    to_a, to_b = path @ a, path @ b
    assert (to_a.diff() < 0).all() and (to_b.diff() > 0).all()


def test_slerp_steps_are_even_in_angle():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    angles = torch.atan2(interpolate(a, b, 3, "slerp")[:, 1], interpolate(a, b, 3, "slerp")[:, 0])
    torch.testing.assert_close(angles, torch.tensor([1, 2, 3]) * torch.pi / 8)
    with pytest.raises(ValueError, match="linear or slerp"):
        interpolate(a, b, 3, "cubic")


def test_fan_out_decodes_each_step_to_its_nearest_bank_query(tmp_path):
    angle = {"seed": 0.0, "doc": 90.0, "q10": 10.0, "q45": 45.0, "q80": 80.0}
    embed = lambda texts: torch.tensor([[torch.cos(torch.deg2rad(torch.tensor(angle[t]))),  # noqa: E731
                                         torch.sin(torch.deg2rad(torch.tensor(angle[t])))] for t in texts])
    calls = []
    counting = lambda texts: calls.append(len(texts)) or embed(texts)  # noqa: E731
    decoder = NearestNeighbourDecoder(["q10", "q45", "q80"], counting, tmp_path, model_key="m")
    NearestNeighbourDecoder(["q10", "q45", "q80"], counting, tmp_path, model_key="m")  # from the cache
    assert calls == [3]
    path = fan_out(embed, "seed", "doc", decoder, steps=2, mode="slerp")  # points at 0, 30, 60, 90 degrees
    assert [r["decoded"] for r in path] == ["q10", "q45", "q45", "q80"]
    assert path[0]["sim_seed"] == pytest.approx(1.0) and path[-1]["sim_target"] == pytest.approx(1.0)
