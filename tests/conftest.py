"""Shared test helpers (pytest puts tests/ on sys.path, so test modules import them directly)."""
import numpy as np
import pytest


def gaussian_smoothing(field, box_size, radius):
    """``field`` [box side ``box_size``, Mpc/h] times exp(-k^2 R^2 / 2), R = ``radius`` [Mpc/h], in
    Fourier space (numpy FFTs, float64)."""
    n = field.shape[0]
    modes = (np.fft.fftfreq(n, 1 / n)[:, None, None], np.fft.fftfreq(n, 1 / n)[None, :, None],
             np.arange(n // 2 + 1)[None, None, :])
    k2 = sum((2 * np.pi / box_size * m) ** 2 for m in modes)
    smoothed = np.fft.rfftn(field) * np.exp(-k2 * radius ** 2 / 2)
    return np.fft.irfftn(smoothed, s=field.shape, axes=(0, 1, 2))


def write_tiny_checkpoint(path, tile, core, spacing, seed=0):
    """Inference checkpoint of an untrained 'tiny' U-Net (tile, core [voxels], HR spacing and
    twice that LR spacing [Mpc/h]); a small normalisation scale keeps untrained outputs finite."""
    import torch

    from emulator import checkpoint
    from emulator.config import TrainConfig
    from emulator.normalization import Normalization

    torch.manual_seed(seed)
    config = TrainConfig(preset="tiny", tile=tile, core=core)
    meta = checkpoint.ModelMeta(config=config, spacing=spacing, lr_spacing=2 * spacing,
                                normalization=Normalization(shift=0.0, scale=0.02))
    checkpoint.save_inference_model(path, meta, checkpoint.build_net(config))
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module (``pytestmark = pytest.mark.usefixtures(...)``): the 8^3-16^3
    networks of the tests are dominated by per-op overhead, where OpenMP synchronisation between
    threads costs more than it saves (10x slower on a busy 2-core machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
