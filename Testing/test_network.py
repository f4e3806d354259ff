"""The MISSU network: shapes, gradients, the training-only branch, determinism, input checks."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from missu.errors import MISSUError
from missu.network import PRESETS, MISSULoss, TrainOutput, build_model, channel_kl, preset_config
from missu.network.summary import summarize


def _label(shape, classes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, classes, (shape[0], 1, *shape[2:]), generator=g)


def test_training_output_shapes(tiny_config):
    model = build_model(tiny_config).train()
    x = torch.randn(2, 2, 16, 24, 32)  # not the ROI size: the position embedding is resampled
    out = model(x)
    assert isinstance(out, TrainOutput)
    assert out.logits.shape == (2, 3, 16, 24, 32)
    assert [a.shape for a in out.aux_logits] == [(2, 3, 16, 24, 32)] * 3
    widths = tiny_config.widths
    expected = [(2, widths[i], 16 >> i, 24 >> i, 32 >> i) for i in range(3)]
    assert [tuple(s.shape) for s in out.students] == expected
    assert [tuple(t.shape) for t in out.teachers] == expected


@pytest.mark.parametrize("student", ["decoder", "encoder"])
def test_gradients_reach_every_parameter(tiny_config, student):
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(tiny_config, student=student)).train()
    x = torch.randn(2, 2, 16, 16, 16)
    loss, parts = MISSULoss()(model(x), _label(x.shape, 3))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reaches {missing}"
    assert parts["distill"] > 0 and parts["aux"] > 0


def test_teacher_is_detached_in_the_distillation_term(tiny_config):
    torch.manual_seed(0)
    model = build_model(tiny_config).train()
    out = model(torch.randn(1, 2, 16, 16, 16))
    kl = sum(channel_kl(s, t) for s, t in zip(out.students, out.teachers))
    assert kl > 0
    kl.backward()
    assert all(p.grad is None for p in model.distill.parameters()), "the KL term must not train the teacher"
    assert model.head.weight.grad is None and model.decoder[0].fuse.weight.grad is not None


def test_channel_kl_is_zero_only_for_equal_distributions():
    a = torch.randn(2, 8, 4, 4, 4)
    assert channel_kl(a, a).abs() < 1e-6
    assert channel_kl(a, a + 5.0).abs() < 1e-5  # softmax is shift-invariant over channels
    assert channel_kl(a, torch.randn_like(a)) > 0.1
    assert channel_kl(a, 2 * a, temperature=2.0) == pytest.approx(4 * channel_kl(a / 2, a).item(), rel=1e-5)


def test_eval_drops_the_branch_and_equals_the_main_path(tiny_config):
    torch.manual_seed(0)
    full = build_model(tiny_config).eval()
    plain = build_model(tiny_config, inference=True).eval()
    assert plain.distill is None
    plain.load_state_dict(full.inference_state_dict(), strict=True)
    assert not any(k.startswith("distill.") for k in full.inference_state_dict())
    x = torch.randn(1, 2, 16, 16, 24)
    with torch.no_grad():
        a, b, again = full(x), plain(x), full(x)
    assert isinstance(a, torch.Tensor)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a, again, rtol=0, atol=0)  # no dropout active in eval mode


def test_inference_costs_exactly_the_backbone():
    missu, transbts = summarize(PRESETS["missu"]), summarize(PRESETS["transbts"])
    assert missu["parameters"]["inference"] == transbts["parameters"]["inference"]
    assert missu["flops_per_window"] == transbts["flops_per_window"]
    assert missu["parameters"]["training"] > missu["parameters"]["inference"]


def test_missu_preset_matches_the_official_backbone_size():
    summary = summarize(preset_config("missu", in_channels=4, out_channels=4, roi_size=(128, 128, 128)))
    assert summary["parameters"]["inference"] == pytest.approx(32.99e6, rel=0.02)
    assert summary["gmac_per_window"] == pytest.approx(325.4, rel=0.02)


def test_fixed_seed_is_deterministic(tiny_config):
    def run():
        torch.manual_seed(123)
        model = build_model(tiny_config).train()
        x = torch.randn(1, 2, 16, 16, 16)
        loss, _ = MISSULoss()(model(x), _label(x.shape, 3))
        return loss.detach()

    assert torch.equal(run(), run())


@pytest.mark.parametrize(
    "shape, message",
    [
        ((1, 2, 16, 16, 12), "multiple of the network stride 8"),
        ((1, 3, 16, 16, 16), "takes 2 input channel"),
        ((2, 16, 16, 16), "5-D tensor"),
    ],
)
def test_bad_inputs_raise_clear_errors(tiny_config, shape, message):
    model = build_model(tiny_config).eval()
    with pytest.raises(MISSUError, match=message):
        model(torch.randn(*shape))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"roi_size": (100, 96, 96)}, "multiples of 8"),
        ({"embed_dim": 100, "num_heads": 8}, "not divisible by num_heads"),
        ({"student": "middle"}, "student must be"),
        ({"in_channels": 0}, ">= 1"),
    ],
)
def test_bad_configs_raise_clear_errors(overrides, message):
    with pytest.raises(MISSUError, match=message):
        preset_config("missu", **overrides)


def test_unknown_preset_lists_the_choices():
    with pytest.raises(MISSUError, match="missu-small"):
        preset_config("unet")


def test_any_channel_and_class_count():
    config = preset_config("missu-small", in_channels=1, out_channels=2, roi_size=(32, 32, 32))
    model = build_model(config).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 32, 32, 32)).shape == (1, 2, 32, 32, 32)
