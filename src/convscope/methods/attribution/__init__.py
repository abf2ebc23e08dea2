"""Attribution methods; importing this package registers every one of them."""

from .base import Attribution
from .cam import CAM, GradCAM, GradCAMPlusPlus, GuidedGradCAM
from .cam_retrofit import Retrofit, retrofit_cam
from .gradients import GradientXInput, IntegratedGradients, Saliency
from .guided import Deconvnet, GuidedBackprop, LayerGuidedBackprop
from .smoothgrad import SmoothGrad

__all__ = [
    "CAM",
    "Attribution",
    "Deconvnet",
    "GradCAM",
    "GradCAMPlusPlus",
    "GradientXInput",
    "GuidedBackprop",
    "GuidedGradCAM",
    "IntegratedGradients",
    "LayerGuidedBackprop",
    "Retrofit",
    "Saliency",
    "SmoothGrad",
    "retrofit_cam",
]
