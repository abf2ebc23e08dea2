"""Dataset analyses: one streaming scan (top-k exemplars, embeddings, predictions), exact
nearest neighbours, receptive-field patches and 2-D / 3-D maps (PCA, t-SNE, UMAP). Tensors in,
tensors out; datasets and atlases are read and written by :mod:`convscope.tasks.scan` and
:mod:`convscope.data.atlas`."""

from .neighbors import Neighbors, nearest_neighbors
from .patches import crop_patches, unit_boxes
from .projection import PROJECTIONS, embed, knn_accuracy, pca, project
from .scan import BatchResult, Scanner, ScanResult, scan, scan_batch_size
from .topk import TopK

__all__ = ["PROJECTIONS", "BatchResult", "Neighbors", "ScanResult", "Scanner", "TopK", "crop_patches",
           "embed", "knn_accuracy", "nearest_neighbors", "pca", "project", "scan", "scan_batch_size",
           "unit_boxes"]
