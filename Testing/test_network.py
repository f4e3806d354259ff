"""The MISSU network: shapes, gradients, the training-only branch, determinism, input checks."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from missu.errors import MISSUError
from missu.network import PRESETS, MISSULoss, TrainOutput, build_model, preset_config, probability_kl
from missu.network.summary import summarize


def _label(shape, classes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, classes, (shape[0], 1, *shape[2:]), generator=g)


def test_training_output_shapes(tiny_config):
    model = build_model(tiny_config).train()
    x = torch.randn(2, 2, 16, 24, 32)  # not the ROI size: the position embedding is resampled
    out = model(x)
    assert isinstance(out, TrainOutput)
    assert out.logits.shape == out.teacher_logits.shape == (2, 3, 16, 24, 32)


def test_gradients_reach_every_parameter(tiny_config):
    torch.manual_seed(0)
    model = build_model(tiny_config).train()
    x = torch.randn(2, 2, 16, 16, 16)
    loss, parts = MISSULoss(scale_weights=(1.0, 1.0, 1.0))(model(x), _label(x.shape, 3))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reaches {missing}"
    assert parts["distill"] > 0 and parts["aux"] > 0


def test_the_backbone_learns_from_the_teacher_only_through_distillation(tiny_config):
    """The teacher's inputs are detached: its segmentation loss trains the branch alone, and the KL term
    trains the backbone alone (the teacher's logits are detached in it)."""
    torch.manual_seed(0)
    model = build_model(tiny_config).train()
    out = model(torch.randn(1, 2, 16, 16, 16))
    label = _label((1, 2, 16, 16, 16), 3)
    MISSULoss(distill_weight=0.0)._seg(out.teacher_logits, label).backward(retain_graph=True)
    assert all(p.grad is None for n, p in model.named_parameters() if not n.startswith("distill."))
    assert all(p.grad is not None for p in model.distill.parameters())
    model.zero_grad(set_to_none=True)
    probability_kl(out.logits, out.teacher_logits).backward()
    assert all(p.grad is None for p in model.distill.parameters()), "the KL term must not train the teacher"
    assert model.head.weight.grad.abs().sum() > 0 and model.stem[0].weight.grad.abs().sum() > 0


def test_the_teacher_projects_on_the_coarser_grid_with_the_same_result(tiny_config):
    """The fusion pools before projecting (the cheaper order): the same teacher as projecting first, since
    resampling averages and a 1x1x1 convolution is affine."""
    import torch.nn.functional as F

    from missu.network.lmsf import _resize

    torch.manual_seed(0)
    model = build_model(tiny_config).train()
    teacher = model.distill
    skips = [torch.randn(2, w, 16 // 2**i, 16 // 2**i, 16 // 2**i) for i, w in enumerate(tiny_config.widths[:3])]
    decoded = [torch.randn_like(s) for s in skips]
    size = skips[1].shape[2:]
    fused = teacher.fuse(sum(_resize(proj(f), size) for proj, f in zip(teacher.project, (*skips, *decoded))))
    reference = F.interpolate(teacher.merge(torch.cat([fused, *(b(fused) for b in teacher.branches)], dim=1)),
                              size=skips[0].shape[2:], mode="trilinear", align_corners=False)
    reference = teacher.head(teacher.out(reference + teacher.detail(torch.cat([skips[0], decoded[0]], dim=1))))
    projected = []  # and in the cheaper order: the finest features reach their projection already pooled
    teacher.project[0].register_forward_pre_hook(lambda module, args: projected.append(args[0].shape[2:]))
    torch.testing.assert_close(teacher(skips, decoded), reference, rtol=1e-5, atol=1e-5)
    assert projected == [size]


def test_no_distillation_builds_no_branch(tiny_config):
    plain = build_model(dataclasses.replace(tiny_config, distillation=False)).train()
    assert plain.distill is None
    assert not any(n.startswith("distill.") for n, _ in plain.named_parameters())
    out = plain(torch.randn(1, 2, 16, 16, 16))
    assert isinstance(out, torch.Tensor)
    loss, parts = MISSULoss()(out, _label(out.shape, 3))
    assert set(parts) == {"seg", "total"}


def test_probability_kl_is_zero_only_for_equal_distributions():
    a = torch.randn(2, 3, 4, 4, 4)
    assert probability_kl(a, a).abs() < 1e-6
    assert probability_kl(a, a + 5.0).abs() < 1e-5  # softmax is shift-invariant over classes
    assert probability_kl(a, torch.randn_like(a)) > 0.05
    assert probability_kl(a, 2 * a, temperature=2.0) == pytest.approx(4 * probability_kl(a / 2, a).item(), rel=1e-4)
    # pooled: agreeing region proportions give a smaller KL than voxel-wise disagreement
    b = a.flip(2)
    assert probability_kl(a, b, pool=4) < probability_kl(a, b)


def test_soft_targets_are_accepted_and_agree_with_hard_ones():
    logits, label = torch.randn(2, 3, 8, 8, 8), _label((2, 3, 8, 8, 8), 3)
    hard, _ = MISSULoss()(logits, label)
    soft, _ = MISSULoss()(logits, torch.nn.functional.one_hot(label[:, 0], 3).permute(0, 4, 1, 2, 3).float())
    assert hard.item() == pytest.approx(soft.item(), rel=1e-5)
    classic, _ = MISSULoss(soft_dice=False)(logits, label)
    assert classic.item() == pytest.approx(hard.item(), rel=1e-5), "the two Dice formulas agree on hard targets"


@pytest.mark.parametrize("soft_dice", [True, False])
def test_the_loss_of_soft_targets_is_lowest_where_the_prediction_is_the_target(soft_dice):
    target = torch.full((1, 1, 6, 6, 6), 0.6)  # every voxel 60 % foreground (a boundary, anti-aliased)
    target = torch.cat([1 - target, target], 1)

    def loss_at(p: float) -> float:
        logits = torch.tensor([1 - p, p]).log().view(1, 2, 1, 1, 1).expand_as(target)
        return MISSULoss(soft_dice=soft_dice)(logits, target)[0].item()

    best = min((0.5, 0.55, 0.6, 0.65, 0.7), key=loss_at)
    assert (best == 0.6) == soft_dice, best  # the classic formula pushes the voxel towards foreground


def test_the_distillation_gradient_does_not_vanish_where_the_student_is_confidently_wrong():
    teacher = torch.tensor([0.88, 0.12]).log().view(1, 2, 1, 1, 1)
    for gap in (10.0, 25.0):  # the student's logit gap against the teacher's class (p_s ~ 1e-11 at 25)
        student = torch.tensor([0.0, gap]).view(1, 2, 1, 1, 1).requires_grad_()
        probability_kl(student, teacher).backward()
        assert student.grad[0, 0].item() == pytest.approx(-0.88, abs=1e-3), gap


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
    """The trained network in eval mode (branch built, not run) costs what the branch-free backbone costs,
    and the bundle's weights are the training network's minus the branch."""
    config = PRESETS["missu-small"]
    with torch.device("meta"):
        trained = build_model(config).eval()
        backbone = build_model(dataclasses.replace(config, distillation=False)).eval()
        window = torch.empty(1, config.in_channels, *config.roi_size)

    def flops(model):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(window)
        return counter.get_total_flops()

    branch = sum(p.numel() for p in trained.distill.parameters())
    assert branch > 0
    count = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
    assert count(trained) - branch == count(backbone)
    assert sum(v.numel() for v in trained.inference_state_dict().values()) == sum(
        v.numel() for v in backbone.state_dict().values())
    assert flops(trained) == flops(backbone)
    trained.train()
    assert flops(trained) > flops(backbone), "in training the teacher runs"


def test_init_weights_fit_another_roi(tiny_config):
    torch.manual_seed(0)
    source = build_model(tiny_config, inference=True)
    wider = build_model(dataclasses.replace(tiny_config, roi_size=(32, 16, 24)))
    wider.load_weights(source.inference_state_dict())
    assert wider.pos_embed.shape[2:] == (4, 2, 3)
    torch.testing.assert_close(wider.stem[0].weight, source.stem[0].weight)
    with pytest.raises(MISSUError, match="do not fit"):
        build_model(dataclasses.replace(tiny_config, widths=(8, 8, 8, 16))).load_weights(source.state_dict())


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


def test_medium_is_small_with_twice_the_widths():
    small, medium = PRESETS["missu-small"], PRESETS["missu-medium"]
    assert medium.widths == tuple(2 * w for w in small.widths)
    assert dataclasses.replace(medium, widths=small.widths) == small  # nothing else differs


def test_training_gives_the_same_result_in_either_memory_layout():
    """Training may run channels-last (missu/devices.py): with the same seed, the dropout of the tokens must drop the
    same elements as in PyTorch's default layout (it draws its mask in memory order), and the teacher agree too."""
    config = preset_config("missu-small", in_channels=1, out_channels=2, roi_size=(32, 32, 24))
    assert config.dropout > 0
    outputs = []
    for layout in (torch.contiguous_format, torch.channels_last_3d):
        torch.manual_seed(0)
        model = build_model(config).train().to(memory_format=layout)
        x = torch.randn(2, 1, 32, 32, 24, generator=torch.Generator().manual_seed(1))
        torch.manual_seed(2)
        outputs.append(model(x.contiguous(memory_format=layout)))
    for default, channels_last in zip(*outputs):
        torch.testing.assert_close(channels_last, default, rtol=1e-4, atol=1e-4)
