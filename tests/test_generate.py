"""Tile generation (emulator.generate)."""
import dataclasses

import numpy as np
import pytest
import torch

import unet3d
from emulator import checkpoint as ckpt
from emulator.config import GenerationSettings, TrainConfig
from emulator import generate as generate_module
from emulator.generate import conserve_mass, finish_tiles, generate_tiles, native_bf16
from emulator.normalization import Normalization
from sims.errors import InputError
from sims.stats import apply_transfer, apply_void_map

NORM = Normalization(shift=0.1, scale=0.6, upper=6.0)


def tiny_model(prediction="v", in_channels=4, formulation="palette", lr_band=0.0):
    """A LoadedModel around unet3d's 'tiny' net with seeded weights (its zero-initialised output
    layer given small random weights, so that the network is not trivially zero); untrained, so a
    palette model without band by default: nothing ties its output to the LR."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = unet3d.build("tiny", in_channels=in_channels)
        with torch.no_grad():
            for p in net.out[-1].parameters():
                p.normal_(0.0, 0.05)
    config = TrainConfig(preset="tiny", tile=16, core=8, prediction=prediction,
                         p_mask=0.0 if in_channels == 2 else 0.8, formulation=formulation, lr_band=lr_band)
    meta = ckpt.ModelMeta(config=config, spacing=2.0, lr_spacing=4.0, normalization=NORM)
    return ckpt.loaded_model(meta, net, "cpu")


def test_bf16_autocast_keeps_the_preconditioning_in_float32():
    model = tiny_model()
    g = torch.Generator().manual_seed(2)
    x, cond = torch.randn((2, 1, 16, 16, 16), generator=g), torch.randn((2, 3, 16, 16, 16), generator=g)
    full = model.denoiser()(x, 2.0, cond)
    half = model.denoiser(autocast=torch.bfloat16)(x, 2.0, cond)
    assert half.dtype == torch.float32
    assert 0 < (half - full).abs().max() < 0.05 * full.abs().max()


def lognormal_tiles(seed, count, n=16):
    g = np.random.default_rng(seed).normal(size=(count, n, n, n))
    return (np.exp(0.5 * g - 0.125) - 1).astype(np.float32)


@pytest.mark.parametrize("sampler", ["dpmpp-2m", "dpmpp-2m-sde"])
def test_tile_depends_on_its_seed_only(sampler):
    model = tiny_model()
    lr = lognormal_tiles(0, 3)
    seeds = [11, 12, 13]
    together = generate_tiles(model, GenerationSettings(sampler, 4), lr, None, None, seeds, batch_size=3)
    alone = generate_tiles(model, GenerationSettings(sampler, 4), lr, None, None, seeds, batch_size=1)
    assert together.shape == (3, 16, 16, 16) and together.dtype == np.float32
    assert np.all(np.isfinite(together)) and together.min() >= -1.0 - NORM.eps
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-5)
    last = generate_tiles(model, GenerationSettings(sampler, 4), lr[2:], None, None, seeds[2:])
    np.testing.assert_allclose(last[0], together[2], rtol=1e-4, atol=1e-5)
    other = generate_tiles(model, GenerationSettings(sampler, 4), lr[2:], None, None, [14])
    assert np.abs(other[0] - together[2]).max() > 1e-2


def test_a_tile_does_not_depend_on_the_thread_count():
    """The intra-op threads split the same arithmetic: 1 and 2 threads agree to float round-off."""
    model, lr = tiny_model(), lognormal_tiles(1, 2)
    threads = torch.get_num_threads()
    try:
        out = []
        for count in (1, 2):
            torch.set_num_threads(count)
            out.append(generate_tiles(model, GenerationSettings("dpmpp-2m-sde", 4), lr, None, None, [3, 4]))
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(out[0], out[1], rtol=1e-4, atol=1e-5)


def test_a_batch_that_runs_out_of_memory_is_halved_until_it_fits(monkeypatch):
    model = tiny_model()
    lr, seeds = lognormal_tiles(1, 5), [21, 22, 23, 24, 25]
    alone = generate_tiles(model, GenerationSettings(steps=3), lr, None, None, seeds, batch_size=1)
    real, sizes = generate_module._generate_batch, []

    def fits_two(model, denoiser, sample, sigmas, lr, *args, **kwargs):
        sizes.append(len(lr))
        if len(lr) > 2:
            raise torch.OutOfMemoryError("stand-in for a CUDA allocation failure")
        return real(model, denoiser, sample, sigmas, lr, *args, **kwargs)

    monkeypatch.setattr(generate_module, "_generate_batch", fits_two)
    together = generate_tiles(model, GenerationSettings(steps=3), lr, None, None, seeds)
    assert sizes == [5, 3, 2, 2, 1]        # all, halved twice, then the rest in batches of 2
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-5)
    sizes.clear()
    monkeypatch.setattr(generate_module, "_generate_batch",
                        lambda *a, **k: (_ for _ in ()).throw(torch.OutOfMemoryError("full")))
    with pytest.raises(InputError, match="batch_size: one 16\\^3 tile does not fit"):
        generate_tiles(model, GenerationSettings(steps=3), lr, None, None, seeds)


@pytest.mark.parametrize("in_channels", [4, 2])
def test_known_voxels_are_returned_exactly(in_channels):
    model = tiny_model("eps", in_channels)
    lr = lognormal_tiles(1, 2)
    known = lognormal_tiles(2, 2)
    mask = np.zeros(lr.shape, dtype=bool)
    mask[:, :4] = True
    mask[1, :, :, -3:] = True
    out = generate_tiles(model, GenerationSettings("heun", 3), lr, known, mask, [1, 2])
    np.testing.assert_array_equal(out[mask], known[mask])
    assert np.all(np.isfinite(out))


def test_conserve_mass_rescales_the_generated_voxels_to_the_lr_mass():
    """Per tile, sum over generated voxels of 1 + delta becomes the LR's, by one factor (the
    density ratio is constant there); known voxels and fully known tiles are untouched."""
    delta, lr = 1.3 * (1 + lognormal_tiles(5, 3)) - 1, lognormal_tiles(6, 3)    # 30 % too much mass
    mask = np.zeros(lr.shape, dtype=bool)
    mask[1, :6] = True
    mask[2] = True
    out = conserve_mass(delta, lr, mask)
    free = ~mask
    for b in (0, 1):
        np.testing.assert_allclose((1 + out[b])[free[b]].sum(), (1 + lr[b])[free[b]].sum(), rtol=1e-5)
        ratio = (1 + out[b])[free[b]] / (1 + delta[b])[free[b]]
        assert ratio.std() < 1e-5 * ratio.mean() and abs(ratio.mean() - 1 / 1.3) < 0.02
    np.testing.assert_array_equal(out[mask], delta[mask])


@pytest.mark.parametrize("mass_conservation", [True, False])
def test_generated_tiles_hold_the_lr_mass_by_default(mass_conservation):
    """An untrained network's tiles do not conserve mass on their own; the default fix does."""
    model = tiny_model()
    lr = lognormal_tiles(7, 2)
    mask = np.zeros(lr.shape, dtype=bool)
    mask[:, :, :4] = True
    out = generate_tiles(model, GenerationSettings(steps=2, mass_conservation=mass_conservation), lr,
                         lognormal_tiles(8, 2), mask, [3, 4])
    mass_ratio = np.where(mask, 0, 1 + out).sum(axis=(1, 2, 3)) / np.where(mask, 0, 1 + lr).sum(axis=(1, 2, 3))
    if mass_conservation:
        np.testing.assert_allclose(mass_ratio, 1.0, rtol=1e-5)
    else:
        assert np.abs(mass_ratio - 1).max() > 1e-2


def test_generation_settings_are_checked():
    model = tiny_model()
    lr = lognormal_tiles(0, 1)
    for bad, setting in (({"sampler": "euler"}, "sampler"), ({"lr_consistency": 2.0}, "lr_consistency"),
                         ({"steps": 0}, "steps"), ({"sigma_schedule": "linear"}, "sigma_schedule")):
        with pytest.raises(InputError, match=f"^{setting}: "):
            GenerationSettings(**bad)
    assert GenerationSettings("ddpm").sigma_schedule == "trained"
    assert GenerationSettings("dpmpp-2m").sigma_schedule == "karras"
    unset = GenerationSettings(lr_consistency=0.25)          # sampler and steps: the model's own
    assert unset.sampler is None and unset.steps is None and unset.sigma_schedule is None
    with_config = lambda **changes: dataclasses.replace(model, config=model.config.replace(**changes))
    own = unset.for_model(with_config(val_sampler="ddim", val_steps=7))
    assert own == GenerationSettings("ddim", 7, lr_consistency=0.25, corner_filter=False, void_map=False)
    assert own.sigma_schedule == "karras"
    assert GenerationSettings(steps=3).for_model(model) == GenerationSettings("dpmpp-2m", 3, corner_filter=False,
                                                                              void_map=False)
    student = with_config(init_from="t.pt", distill_steps=2)
    assert GenerationSettings().for_model(student) == GenerationSettings("consistency", 2, corner_filter=False,
                                                                         void_map=False)
    mapped = dataclasses.replace(model, void_map={"x": [-1.0, 0.0], "y": [-1.0, 0.0]})
    assert GenerationSettings().for_model(mapped).void_map
    assert not GenerationSettings(void_map=False).for_model(mapped).void_map
    damped = dataclasses.replace(model, corner_transfer={"k": [1.0, 2.0], "t": [1.0, 0.5]})
    assert GenerationSettings().for_model(damped).corner_filter
    assert not GenerationSettings().for_model(mapped).corner_filter
    assert not GenerationSettings(corner_filter=False).for_model(damped).corner_filter
    with pytest.raises(InputError, match="^sampler_options: dpmpp-2m takes"):
        generate_tiles(model, GenerationSettings(sampler_options={"eta": 1.0}), lr, None, None, [0])
    with pytest.raises(ValueError, match="seeds"):
        generate_tiles(model, GenerationSettings(), lr, None, None, [0, 1])
    settings = GenerationSettings("ddim", 2, lr_consistency=0.5, sampler_options={"eta": 0.5})
    assert GenerationSettings.from_dict(settings.to_dict()) == settings
    assert np.all(np.isfinite(generate_tiles(model, settings, lr, None, None, [0])))


def test_an_exploding_network_still_gives_a_finite_physical_field_and_a_nan_one_an_error():
    """Output layer weights x 1e6 (an undertrained or diverged model): every estimate is clamped
    to [delta = -1, the training maximum], so the field is finite; NaN weights: one InputError
    naming the tiles, no field."""
    model = tiny_model(formulation="residual", lr_band=0.5)
    lr = lognormal_tiles(11, 2)
    with torch.no_grad():
        for p in model.net.out[-1].parameters():
            p.mul_(1e6)
    out = generate_tiles(model, GenerationSettings(steps=3, mass_conservation=False), lr, None, None, [1, 2])
    assert np.isfinite(out).all() and out.min() >= -1.0
    assert out.max() <= NORM.inverse(np.float64(NORM.upper)) * (1 + 1e-5)
    with torch.no_grad():
        next(iter(model.net.out[-1].parameters())).fill_(float("nan"))
    with pytest.raises(InputError, match="model.*NaN.*seed.*1, 2"):
        generate_tiles(model, GenerationSettings(steps=3), lr, None, None, [1, 2])


def test_bf16_changes_a_sample_by_round_off_only_and_only_where_native():
    """bf16 autocast runs where the device computes bf16 in hardware, float32 elsewhere; the
    sample it gives agrees with float32's (same seeds) far inside the seed-to-seed scatter."""
    model = tiny_model(formulation="residual", lr_band=0.5)
    lr = lognormal_tiles(12, 2)
    fp32, bf16, other = (generate_tiles(model, GenerationSettings(steps=3, bf16=b), lr, None, None, s)
                         for b, s in ((False, [1, 2]), (True, [1, 2]), (False, [3, 4])))
    if not native_bf16("cpu"):
        np.testing.assert_array_equal(bf16, fp32)
        return
    assert 0 < np.abs(bf16 - fp32).max() < 0.1 * np.abs(other - fp32).max()


def test_void_map_sends_the_generated_voxels_through_the_map_before_mass_conservation():
    """A model with a void map generates the tiles of the same model without it, with every
    generated voxel mapped (sims.stats.apply_void_map) and the known voxels untouched; the setting
    void_map=False gives the unmapped tiles."""
    plain = tiny_model()
    void_map = {"x": [-1.0, -0.6, 0.0], "y": [-1.0, -0.9, -0.1]}
    mapped_model = dataclasses.replace(plain, void_map=void_map)
    lr, known = lognormal_tiles(3, 2), lognormal_tiles(4, 2)
    mask = np.zeros(lr.shape, dtype=bool)
    mask[:, :4] = True
    settings = GenerationSettings("dpmpp-2m", 3, mass_conservation=False)
    before = generate_tiles(plain, settings, lr, known, mask, [1, 2])
    after = generate_tiles(mapped_model, settings, lr, known, mask, [1, 2])
    expected = np.where(mask, known, apply_void_map(before, void_map["x"], void_map["y"]))
    np.testing.assert_array_equal(after, expected)
    assert np.any((before < 0) & ~mask) and not np.array_equal(after, before)
    off = generate_tiles(mapped_model, settings.replace(void_map=False), lr, known, mask, [1, 2])
    np.testing.assert_array_equal(off, before)
    conserved = generate_tiles(mapped_model, settings.replace(mass_conservation=True), lr, known, mask, [1, 2])
    np.testing.assert_allclose(conserved, conserve_mass(expected, lr, mask), rtol=1e-6, atol=1e-6)


def test_corner_filter_damps_each_generated_tile_before_the_void_map():
    """A model with a corner transfer generates the tiles of the same model without it, each
    tile multiplied by T(|k|) on its own grid (sims.stats.apply_transfer, side = tile x spacing)
    and then sent through the void map, with the known voxels untouched; corner_filter=False
    gives the model's tiles without it."""
    plain = tiny_model()
    void_map = {"x": [-1.0, -0.6, 0.0], "y": [-1.0, -0.9, -0.1]}
    side = 16 * plain.spacing
    k_nyq = np.pi * 16 / side
    transfer = {"k": [k_nyq, 1.3 * k_nyq, 1.8 * k_nyq], "t": [1.0, 0.5, 0.0]}
    mapped = dataclasses.replace(plain, void_map=void_map)
    damped = dataclasses.replace(mapped, corner_transfer=transfer)
    lr, known = lognormal_tiles(5, 2), lognormal_tiles(6, 2)
    mask = np.zeros(lr.shape, dtype=bool)
    mask[:, :, :4] = True
    settings = GenerationSettings("dpmpp-2m", 3, mass_conservation=False, void_map=False)
    before = generate_tiles(plain, settings, lr, known, mask, [1, 2])
    after = generate_tiles(damped, settings.replace(void_map=True), lr, known, mask, [1, 2])
    filtered = np.stack([apply_transfer(tile, side, transfer["k"], transfer["t"], keep_mass=True)
                         for tile in before])
    expected = np.where(mask, known, apply_void_map(filtered, void_map["x"], void_map["y"]))
    np.testing.assert_allclose(after, expected, atol=1e-6)
    assert np.abs(filtered - before)[~mask].max() > 0.01
    np.testing.assert_array_equal(after[mask], known[mask])
    off = generate_tiles(damped, settings.replace(corner_filter=False), lr, known, mask, [1, 2])
    np.testing.assert_array_equal(off, before)


def test_finish_tiles_on_raw_samples_gives_what_generation_with_the_corrections_gives():
    """Tiles generated with no correction, then sent through finish_tiles with the corner
    transfer, void map and mass conservation on, equal the tiles generated with them on (what
    benchmarks/bench_samplers.py relies on to measure raw and corrected samples from one run)."""
    plain = tiny_model()
    side = 16 * plain.spacing
    k_nyq = np.pi * 16 / side
    model = dataclasses.replace(plain, void_map={"x": [-1.0, -0.6, 0.0], "y": [-1.0, -0.9, -0.1]},
                                corner_transfer={"k": [k_nyq, 1.3 * k_nyq, 1.8 * k_nyq], "t": [1.0, 0.5, 0.0]})
    lr, known = lognormal_tiles(7, 2), lognormal_tiles(8, 2)
    mask = np.zeros(lr.shape, dtype=bool)
    mask[:, 5:] = True
    settings = GenerationSettings("dpmpp-2m", 3)
    corrected = generate_tiles(model, settings, lr, known, mask, [3, 4])
    raw = generate_tiles(model, settings.replace(corner_filter=False, void_map=False, mass_conservation=False),
                         lr, known, mask, [3, 4])
    assert np.abs(raw - corrected)[~mask].max() > 0.01
    np.testing.assert_allclose(finish_tiles(model, settings, raw, lr, known, mask), corrected, atol=1e-6)
    np.testing.assert_array_equal(finish_tiles(model, settings.replace(corner_filter=False, void_map=False,
                                                                       mass_conservation=False),
                                               raw, lr, known, mask), raw)
