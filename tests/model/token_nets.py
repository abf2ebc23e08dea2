"""Tiny seeded token models, each written as one timm family lays out its tensors (16x16 images).

* ``TinyViT``: 4x4 patches -> 16 tokens after a class token; its norms are a LayerNorm SUBCLASS
  (as timm's ``LayerNorm``); its head reads the class token only. Its attention keeps a
  ``k_norm`` Identity on (B, heads, N, d) keys (the layer that was once picked as "auto").
* ``TinySwin``: channels-last (B, h, w, C) maps through two blocks whose ``norm1`` normalizes
  the last dimension; its head averages the map.
* ``TinyMobileViT``: a conv stem, then a block that unfolds 2x2 patches into the batch
  (B * 4, N, C), runs a transformer on them and folds them back (timm's ``MobileVitBlock``
  order), then a 1x1 conv, global pooling and a linear head. ``declare=False`` drops the
  block's ``patch_area``, so nothing says how its batch was folded.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from convscope.model import Model, Preprocess

SIZE = 16
DIM = 6  # not a side of any grid here: channels-first and channels-last cannot be confused


class TokenNorm(nn.LayerNorm):
    """A LayerNorm subclass (timm's ``LayerNorm`` is one)."""


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.k_norm = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        k = self.k_norm(k)  # (B, heads, N, d)
        att = (q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)).softmax(-1)
        return self.proj((att @ v).transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, dim: int, norm: type[nn.LayerNorm] = nn.LayerNorm) -> None:
        super().__init__()
        self.norm1, self.attn = norm(dim), Attention(dim)
        self.norm2 = norm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    num_prefix_tokens = 1

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, DIM, 4, stride=4)
        self.cls_token = nn.Parameter(torch.randn(1, 1, DIM))
        self.pos_embed = nn.Parameter(torch.randn(1, 17, DIM) * 0.5)
        self.blocks = nn.Sequential(Block(DIM, TokenNorm), Block(DIM, TokenNorm))
        self.norm = TokenNorm(DIM)
        self.head = nn.Linear(DIM, classes)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], 1) + self.pos_embed
        return self.head(self.norm(self.blocks(tokens))[:, 0])


class SwinBlock(nn.Module):
    """Attention over the tokens of a channels-last (B, h, w, C) map, which it keeps."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        x = x + self.attn(self.norm1(x).reshape(b, h * w, c)).reshape(b, h, w, c)
        return x + self.mlp(self.norm2(x))


class TinySwin(nn.Module):
    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, DIM, 4, stride=4)
        self.stage = nn.Sequential(SwinBlock(DIM), SwinBlock(DIM))
        self.norm = nn.LayerNorm(DIM)
        self.head = nn.Linear(DIM, classes)

    def forward(self, x: Tensor) -> Tensor:
        maps = self.norm(self.stage(self.patch_embed(x).permute(0, 2, 3, 1)))  # (B, h, w, C)
        return self.head(maps.mean((1, 2)))


class UnfoldBlock(nn.Module):
    """MobileViT's block: local conv, 2x2 patches unfolded into the batch, transformer, fold."""

    def __init__(self, dim: int, declare: bool = True) -> None:
        super().__init__()
        self.p = 2
        if declare:
            self.patch_area = self.p * self.p
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)
        self.transformer = nn.Sequential(Block(dim))
        self.norm = nn.LayerNorm(dim)
        self.fusion = nn.Conv2d(2 * dim, dim, 1)

    def unfold(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B * P, N, C), in the order of timm's MobileVitBlock."""
        b, c, h, w = x.shape
        p, nh, nw = self.p, h // self.p, w // self.p
        x = x.reshape(b * c * nh, p, nw, p).transpose(1, 2)
        return x.reshape(b, c, nh * nw, p * p).transpose(1, 3).reshape(b * p * p, nh * nw, c)

    def fold(self, t: Tensor, b: int, h: int, w: int) -> Tensor:
        """(B * P, N, C) -> (B, C, H, W), timm's MobileVitBlock fold."""
        p, nh, nw, c = self.p, h // self.p, w // self.p, t.shape[-1]
        t = t.contiguous().view(b, p * p, nh * nw, c).transpose(1, 3).reshape(b * c * nh, nw, p, p)
        return t.transpose(1, 2).reshape(b, c, h, w)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        t = self.norm(self.transformer(self.unfold(self.conv(x))))
        return self.fusion(torch.cat([x, self.fold(t, b, h, w)], 1))


class TinyMobileViT(nn.Module):
    def __init__(self, classes: int = 5, declare: bool = True) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, DIM, 4, stride=4), nn.ReLU())
        self.block = UnfoldBlock(DIM, declare)
        self.final_conv = nn.Conv2d(DIM, 8, 1)
        self.head = nn.Linear(8, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.final_conv(self.block(self.stem(x))).mean((2, 3)))


def token_model(kind: str, **options: object) -> Model:
    """One of the nets above, seeded, in eval mode, for 16x16 images."""
    torch.manual_seed(0)
    net = {"vit": TinyViT, "swin": TinySwin, "mobilevit": TinyMobileViT}[kind](**options)  # type: ignore[arg-type]
    return Model(net.eval(), preprocess=Preprocess(input_size=(SIZE, SIZE)), name=f"tiny-{kind}")


def images(batch: int = 2) -> Tensor:
    return torch.randn(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
