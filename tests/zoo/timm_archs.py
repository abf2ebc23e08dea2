"""The timm architectures of tests/zoo: one small variant per family, random weights, small inputs.

Each entry names the model for ``timm.create_model(name, pretrained=False, **options)`` and the
input side it is tested at (a square input, so every map must come back on a square grid). The
models with a fixed token grid (ViT/DeiT, Swin, LeViT) are built for that side through timm's own
``img_size`` option. Fields beside these (the layer "auto" should pick, what the rules promise)
are added by the tests that need them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TimmArch:
    """One timm architecture as the zoo tests build it."""

    name: str
    family: str
    side: int = 64
    options: tuple[tuple[str, object], ...] = ()
    transformer: bool = False
    """Attention or token mixing somewhere in the network (a transformer or a hybrid)."""


TIMM: dict[str, TimmArch] = {a.family: a for a in [
    # CNNs
    TimmArch("resnet18d", "resnet-d"),
    TimmArch("resnext26ts", "resnext"),
    TimmArch("seresnet18", "se"),
    TimmArch("efficientnet_b0", "efficientnet"),
    TimmArch("mobilenetv3_small_050", "mobilenetv3"),
    TimmArch("ghostnet_050", "ghostnet"),
    TimmArch("regnetx_002", "regnet"),
    TimmArch("rexnet_100", "rexnet"),
    TimmArch("dla34", "dla"),
    TimmArch("cspresnet50", "csp"),
    TimmArch("convnext_atto", "convnext"),
    TimmArch("repvgg_a0", "repvgg"),
    TimmArch("res2net50_14w_8s", "res2net"),
    TimmArch("nf_resnet26", "nf-resnet"),
    TimmArch("hrnet_w18_small", "hrnet"),
    TimmArch("mixnet_s", "mixnet"),
    # transformers and hybrids
    TimmArch("vit_tiny_patch16_224", "vit", options=(("img_size", 64),), transformer=True),
    TimmArch("deit_tiny_patch16_224", "deit", options=(("img_size", 64),), transformer=True),
    TimmArch("swin_tiny_patch4_window7_224", "swin", options=(("img_size", 64), ("window_size", 4)),
             transformer=True),
    TimmArch("mobilevit_xxs", "mobilevit", transformer=True),
    TimmArch("fastvit_t8", "fastvit", transformer=True),
    TimmArch("edgenext_xx_small", "edgenext", transformer=True),
    TimmArch("poolformer_s12", "poolformer", transformer=True),
    TimmArch("levit_128s", "levit", side=128, options=(("img_size", 128),), transformer=True),
]}
