"""The timm architectures of tests/zoo: one small variant per family, random weights, small inputs.

Each entry names the model for ``timm.create_model(name, pretrained=False, **options)`` and the
input side it is tested at (a square input, so every map must come back on a square grid). The
models with a fixed token grid (ViT/DeiT, Swin, LeViT) are built for that side through timm's own
``img_size`` option; LeViT at 128, where its last stage still has a 2x2 grid. Fields beside these
(the layer "auto" should pick and how its output reads, what the rules promise) have defaults.

:func:`build` makes one with seeded random weights and batch-norm statistics calibrated on
photos (as tests/zoo/conftest.py does for torchvision), in eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from convscope.model import Model, Preprocess
from convscope.model.labels import imagenet_labels


@dataclass(frozen=True)
class TimmArch:
    """One timm architecture as the zoo tests build it."""

    name: str
    family: str
    side: int = 64
    options: tuple[tuple[str, object], ...] = ()
    transformer: bool = False
    """Attention or token mixing somewhere in the network (a transformer or a hybrid)."""
    layer: str = ""
    """The layer "auto" picks, for explain() and every inside view alike."""
    reads: str = "map"
    """How that layer's output reads as (B, C, h, w): "map" as it is, "tokens" (B, prefix + h*w,
    C) with the model's ``num_prefix_tokens`` dropped, "channels-last" (B, h, w, C)."""
    why: str = ""
    """Why that pick is the sensible one."""
    lrp_conserves: bool = False
    """Built from conv/dense layers, batch norms, elementwise activations, adds, concatenations,
    pooling and gates LRP holds constant (RepVGG once merged): LRP-epsilon conserves the logit on a
    bias-free float64 copy (tests/zoo/test_timm_sums.py)."""


_STAGE = "the last stage's output, after its residual add and activation"
_HEAD_MAP = "the last conv-BN-activation before global pooling"
_FINAL_ID = "final_conv (an Identity after the stages): the stages' output"
_NORM_PRE = "norm_pre (an Identity before the head): the stages' output"
_TOKENS = "the first norm of the last attention block: every patch token still reaches the class token"

TIMM: dict[str, TimmArch] = {a.family: a for a in [
    # CNNs
    TimmArch("resnet18d", "resnet-d", layer="layer4", why=_STAGE, lrp_conserves=True),
    TimmArch("resnext26ts", "resnext", layer="final_conv", why=_FINAL_ID, lrp_conserves=True),
    TimmArch("seresnet18", "se", layer="layer4", why=_STAGE, lrp_conserves=True),
    TimmArch("efficientnet_b0", "efficientnet", layer="bn2", why=_HEAD_MAP),
    TimmArch("mobilenetv3_small_050", "mobilenetv3", layer="blocks",
             why="the blocks' output, before pooling"),
    TimmArch("ghostnet_050", "ghostnet", layer="blocks", why="the blocks' output, before pooling"),
    TimmArch("regnetx_002", "regnet", layer="final_conv", why=_FINAL_ID, lrp_conserves=True),
    TimmArch("rexnet_100", "rexnet", layer="features", why=_HEAD_MAP),
    TimmArch("dla34", "dla", layer="level5", why=_STAGE, lrp_conserves=True),
    TimmArch("cspresnet50", "csp", layer="stages", why=_STAGE, lrp_conserves=True),
    TimmArch("convnext_atto", "convnext", layer="norm_pre", why=_NORM_PRE),
    TimmArch("repvgg_a0", "repvgg", layer="final_conv", why=_FINAL_ID, lrp_conserves=True),
    TimmArch("res2net50_14w_8s", "res2net", layer="layer4", why=_STAGE, lrp_conserves=True),
    TimmArch("nf_resnet26", "nf-resnet", layer="final_act", why="the activation after the final conv"),
    TimmArch("hrnet_w18_small", "hrnet", layer="final_layer", why="the fused branches' final layer",
             lrp_conserves=True),
    TimmArch("mixnet_s", "mixnet", layer="bn2", why=_HEAD_MAP),
    # transformers and hybrids
    TimmArch("vit_tiny_patch16_224", "vit", options=(("img_size", 64),), transformer=True,
             layer="blocks.11.norm1", reads="tokens", why=_TOKENS),
    TimmArch("deit_tiny_patch16_224", "deit", options=(("img_size", 64),), transformer=True,
             layer="blocks.11.norm1", reads="tokens", why=_TOKENS),
    TimmArch("swin_tiny_patch4_window7_224", "swin", options=(("img_size", 64), ("window_size", 4)),
             transformer=True, layer="layers.3.blocks.1.norm1", reads="channels-last",
             why="the first norm of the last attention block, a channels-last map"),
    TimmArch("mobilevit_xxs", "mobilevit", transformer=True, layer="final_conv",
             why="a hybrid: the conv map after the last MobileViT block, which the head pools"),
    TimmArch("fastvit_t8", "fastvit", transformer=True, layer="final_conv",
             why="the conv map the head pools (t8 mixes tokens with RepMixer, no attention)"),
    TimmArch("edgenext_xx_small", "edgenext", transformer=True, layer="norm_pre", why=_NORM_PRE),
    TimmArch("poolformer_s12", "poolformer", transformer=True, layer="stages", why=_STAGE),
    TimmArch("levit_128s", "levit", side=128, options=(("img_size", 128),), transformer=True,
             layer="stages", reads="tokens",
             why="the last stage's 2x2 tokens (LeViT's norms are BatchNorms: no token norm)"),
]}


def build(arch: TimmArch, calibrated: bool = True) -> Model:
    """The architecture with seeded random weights (and calibrated batch norms), in eval mode."""
    import timm  # the zoo venv's; imported here so that collecting this module needs only torch

    from tests.zoo.conftest import calibrate

    torch.manual_seed(0)
    net = timm.create_model(arch.name, pretrained=False, **dict(arch.options))
    model = Model(net, preprocess=Preprocess(input_size=(arch.side, arch.side), resize="stretch"),
                  labels=imagenet_labels(), name=arch.name)
    if calibrated:
        calibrate(model)
    return model.eval()
