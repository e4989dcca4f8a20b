"""Shared test helpers (pytest puts tests/ on sys.path, so test modules import them directly)."""


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
