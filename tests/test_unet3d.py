"""unet3d: presets and parameter count, periodic translation equivariance, conditioning on the
noise level and every input channel, noise embedding, gradient checkpointing, overfitting,
input and configuration errors, bf16 autocast, channels-last and torch.compile graph capture."""
import json
import math

import pytest
import torch

import unet3d
from unet3d.embedding import sinusoidal_embedding

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PAPER_PARAMETERS = 31_511_425  # Rouhiainen et al. 2023 (arXiv:2311.05217), their 3D Palette U-Net


def seeded_model(preset="tiny", seed=0, **overrides):
    """A model in eval mode whose weights are all perturbed by seeded noise: the zero-initialised
    output convolutions would otherwise make every output exactly zero."""
    model = unet3d.build(preset, **overrides).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return model


def inputs(model, n, batch=1, seed=1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, model.config.in_channels, n, n, n, generator=gen)
    return x, torch.linspace(-1.0, 1.0, batch)


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("preset,n,batch", [("tiny", 16, 2), ("small", 16, 2), ("paper", 16, 1)])
def test_presets_map_shapes_and_start_at_zero(preset, n, batch):
    model = unet3d.build(preset).eval()
    x, c = inputs(model, n, batch)
    with torch.no_grad():
        out = model(x, c)
    assert out.shape == (batch, model.config.out_channels, n, n, n)
    assert torch.count_nonzero(out) == 0  # zero-initialised output convolution (ADM)


def test_paper_parameter_count_matches_the_reference():
    model = unet3d.build("paper")
    count = sum(p.numel() for p in model.parameters())
    assert abs(count / PAPER_PARAMETERS - 1) < 0.01
    assert model.config.in_channels == 2 and model.downsample_factor == 4


def test_circular_padding_is_equivariant_under_rolls_by_the_downsample_factor():
    model = seeded_model(channel_mults=(1, 2, 2), attention_levels=(1,))
    factor = model.downsample_factor
    assert factor == 4
    x, c = inputs(model, 16)
    shift, dims = (factor, -2 * factor, 3 * factor), (2, 3, 4)
    with torch.no_grad():
        out = model(x, c)
        rolled = model(torch.roll(x, shift, dims), c)
        off_grid = model(torch.roll(x, (1, 0, 0), dims), c)
    assert rel_err(rolled, torch.roll(out, shift, dims)) < 1e-5
    # a shift that is not a multiple of the factor moves the pooling grid: not equivariant
    assert rel_err(off_grid, torch.roll(out, (1, 0, 0), dims)) > 1e-2


def test_zero_padding_breaks_translation_equivariance():
    model = seeded_model(padding_mode="zeros")
    x, c = inputs(model, 16)
    shift, dims = (4, 0, -2), (2, 3, 4)
    with torch.no_grad():
        err = rel_err(model(torch.roll(x, shift, dims), c), torch.roll(model(x, c), shift, dims))
    assert err > 1e-2


def test_output_depends_on_noise_level_and_every_input_channel():
    model = seeded_model()
    x, _ = inputs(model, 8)
    x.requires_grad_(True)
    c = torch.tensor([0.3], requires_grad=True)
    weight = torch.randn(1, 1, 8, 8, 8, generator=torch.Generator().manual_seed(2))
    (model(x, c) * weight).sum().backward()
    per_channel = x.grad.square().sum(dim=(0, 2, 3, 4)).sqrt()
    assert torch.all(per_channel > 1e-3 * per_channel.max()), per_channel
    assert abs(c.grad.item()) > 0
    with torch.no_grad():
        near = model(x, c.detach() + math.log(1.01) / 4)  # sigma 1% larger, c_noise = ln(sigma) / 4
        far = model(x, c.detach() + 1.0)
        base = model(x, c.detach())
    assert rel_err(near, base) > 1e-4 and rel_err(far, base) > 1e-2


def test_sinusoidal_embedding_periods_and_phases():
    """Channel k has period P_k: at c = P_k it is back to (cos, sin) = (1, 0), at c = P_k / 4 it
    is (0, 1). Periods span [min_period, max_period] geometrically."""
    dim, p_min, p_max = 8, 0.5, 8.0
    periods = p_max * (p_min / p_max) ** (torch.arange(4) / 3)
    for k in range(4):
        full = sinusoidal_embedding(periods[k:k + 1], dim, p_min, p_max)[0]
        quarter = sinusoidal_embedding(periods[k:k + 1] / 4, dim, p_min, p_max)[0]
        assert torch.allclose(full[[k, 4 + k]], torch.tensor([1.0, 0.0]), atol=1e-5)
        assert torch.allclose(quarter[[k, 4 + k]], torch.tensor([0.0, 1.0]), atol=1e-5)
    assert torch.equal(sinusoidal_embedding(torch.zeros(1), dim, p_min, p_max)[0],
                       torch.tensor([1.0] * 4 + [0.0] * 4))


def test_default_embedding_uses_every_channel_and_resolves_nearby_noise_levels():
    """Over c_noise in [-4, 4] every channel of the default code swings by at least 0.9 (none
    idle, unlike sinusoids tuned for timesteps 0..1000), and c_noise for sigmas 1% apart
    (dc = ln(1.01) / 4) gives codes at least 0.1 apart (a clear change for the MLP)."""
    cfg = unet3d.PRESETS["small"]
    code = sinusoidal_embedding(torch.linspace(-4, 4, 801), cfg.channels, cfg.embed_min_period,
                                cfg.embed_max_period)
    swing = code.max(dim=0).values - code.min(dim=0).values
    assert swing.min() > 0.9
    c = torch.linspace(-4, 4, 17)
    step = sinusoidal_embedding(c + math.log(1.01) / 4, cfg.channels, cfg.embed_min_period, cfg.embed_max_period)
    here = sinusoidal_embedding(c, cfg.channels, cfg.embed_min_period, cfg.embed_max_period)
    assert (step - here).norm(dim=1).min() > 0.1


def test_gradient_checkpointing_gives_the_same_gradients():
    plain = seeded_model(dropout=0.3).train()
    ckpt = unet3d.build("tiny", dropout=0.3, gradient_checkpointing=True).train()
    ckpt.load_state_dict(plain.state_dict())
    grads = []
    for model in (plain, ckpt):
        x, c = inputs(model, 8, batch=2)
        x.requires_grad_(True)
        torch.manual_seed(5)  # the same dropout masks in both runs (checkpoint restores the RNG state)
        model(x, c).square().mean().backward()
        grads.append([x.grad] + [p.grad for p in model.parameters()])
    for g_plain, g_ckpt in zip(*grads):
        assert torch.allclose(g_plain, g_ckpt, rtol=1e-5, atol=1e-7)


def test_tiny_overfits_one_pair():
    torch.manual_seed(0)
    model = unet3d.build("tiny").train()
    x, c = inputs(model, 8, seed=3)
    target = torch.randn(1, 1, 8, 8, 8, generator=torch.Generator().manual_seed(4))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for step in range(300):
        optimizer.zero_grad()
        loss = (model(x, c) - target).square().mean()
        loss.backward()
        optimizer.step()
        first = loss.item() if first is None else first
        if loss.item() < first / 100:
            break
    assert loss.item() < first / 100, (step, loss.item(), first)


def test_bad_inputs_give_clear_errors():
    model = unet3d.build("tiny")
    with pytest.raises(ValueError, match="divisible"):
        model(torch.zeros(1, 4, 16, 15, 16), torch.zeros(1))
    with pytest.raises(ValueError, match=r"\(batch, 4, D, H, W\)"):
        model(torch.zeros(1, 3, 16, 16, 16), torch.zeros(1))
    with pytest.raises(ValueError, match="one value per sample"):
        model(torch.zeros(2, 4, 16, 16, 16), torch.zeros(1))


@pytest.mark.parametrize("overrides,setting", [
    ({"norm_groups": 5}, "norm_groups"),
    ({"padding_mode": "reflect"}, "padding_mode"),
    ({"attention_levels": (2,)}, "attention_levels"),
    ({"num_heads": 3}, "num_heads"),
    ({"channel_mults": ()}, "channel_mults"),
    ({"dropout": 1.0}, "dropout"),
    ({"channels": 0}, "channels"),
    ({"colour": "red"}, "colour"),
])
def test_invalid_configuration_names_the_setting(overrides, setting):
    with pytest.raises(unet3d.ConfigError) as err:
        unet3d.build("tiny", **overrides)
    assert err.value.setting == setting


def test_unknown_preset_is_an_error():
    with pytest.raises(unet3d.ConfigError, match="tiny") as err:
        unet3d.build("huge")
    assert err.value.setting == "preset"


def test_config_round_trips_through_json():
    cfg = unet3d.PRESETS["small"].replace(attention_levels=[1], head_channels=None, num_heads=4)
    assert unet3d.UNetConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_bf16_autocast_runs_and_stays_close_to_float32():
    model = seeded_model()
    x, c = inputs(model, 16)
    with torch.no_grad():
        ref = model(x, c)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x, c)
    assert torch.isfinite(low).all()
    assert rel_err(low.float(), ref) < 0.05


def test_channels_last_gives_the_same_output():
    model = seeded_model()
    other = unet3d.build("tiny", channels_last=True).eval()
    other.load_state_dict(model.state_dict())
    x, c = inputs(model, 8)
    with torch.no_grad():
        assert rel_err(other(x, c), model(x, c)) < 1e-5


def test_forward_captures_as_one_graph_for_torch_compile():
    """fullgraph=True fails on any graph break (data-dependent Python control flow)."""
    model = seeded_model(gradient_checkpointing=True)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    x, c = inputs(model, 8)
    with torch.no_grad():
        assert rel_err(compiled(x, c), model(x, c)) < 1e-6
