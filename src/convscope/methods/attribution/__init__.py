"""Attribution methods; importing this package registers every one of them."""

# the gradient methods register first: registration order is the order users see them listed
from .gradients import GradientXInput, IntegratedGradients, Saliency  # isort: skip
from .base import Attribution
from .cam import CAM, GradCAM, GradCAMPlusPlus, GuidedGradCAM
from .cam_retrofit import Retrofit, fit_cam_head
from .cam_variants import EigenCAM, EigenGradCAM, HiResCAM, LayerCAM, XGradCAM
from .deeplift import DeepLift
from .drise import DRISE
from .guided import Deconvnet, GuidedBackprop, LayerGuidedBackprop
from .kernel_shap import KernelShap
from .lime import Lime, LimeResult, top_superpixel_mask
from .lrp import LRP
from .perturbation import RISE, Occlusion
from .scorecam import ScoreCAM

from .ablationcam import AblationCAM  # isort: skip  (registered after Score-CAM, its sibling)
from .fullgrad import FullGrad, FullGradParts
from .shap import DeepLiftShap, GradientShap
from .smoothgrad import SmoothGrad

__all__ = [
    "CAM",
    "DRISE",
    "LRP",
    "RISE",
    "AblationCAM",
    "Attribution",
    "Deconvnet",
    "DeepLift",
    "DeepLiftShap",
    "EigenCAM",
    "EigenGradCAM",
    "FullGrad",
    "FullGradParts",
    "GradCAM",
    "GradCAMPlusPlus",
    "GradientShap",
    "GradientXInput",
    "GuidedBackprop",
    "GuidedGradCAM",
    "HiResCAM",
    "IntegratedGradients",
    "KernelShap",
    "LayerCAM",
    "LayerGuidedBackprop",
    "Lime",
    "LimeResult",
    "Occlusion",
    "Retrofit",
    "Saliency",
    "ScoreCAM",
    "SmoothGrad",
    "XGradCAM",
    "fit_cam_head",
    "top_superpixel_mask",
]
