"""Multi-head self-attention over all voxels of a 3D feature map (ADM ``AttentionBlock``,
Dhariwal & Nichol 2021, arXiv:2105.05233), with torch's fused scaled_dot_product_attention
(flash / memory-efficient kernels where available, so memory stays linear in the token count).
"""
import torch.nn.functional as F
from torch import nn

from unet3d.blocks import GroupNorm32, zero_init


class AttentionBlock(nn.Module):
    """x + proj(MHA(GN(x))), softmax(q k^T / sqrt(head_channels)) v per head, every voxel a token.

    Input and output (B, C, x, y, z). The output projection is zero-initialised, so the block
    starts as the identity. Takes (x, emb) like every U-Net block; the embedding is unused.
    """

    def __init__(self, channels, heads, norm_groups):
        super().__init__()
        self.heads = heads
        self.norm = GroupNorm32(norm_groups, channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = zero_init(nn.Linear(channels, channels))

    def forward(self, x, emb=None):
        b, c = x.shape[:2]
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, N, C)
        qkv = self.qkv(tokens).unflatten(-1, (3, self.heads, c // self.heads)).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, C / heads)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)  # (B, N, C)
        return x + self.proj(out).transpose(1, 2).reshape(x.shape)
