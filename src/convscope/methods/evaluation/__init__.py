"""Evaluation of attribution maps: localization (and, later, faithfulness and sanity checks)."""

from .localization import Localization, box_iou, largest_component, localize, mask_boxes, threshold_mask

__all__ = ["Localization", "box_iou", "largest_component", "localize", "mask_boxes", "threshold_mask"]
