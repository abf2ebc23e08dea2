"""The speed goals ``python -m benchmarks.check`` holds convscope to, in one table.

Each goal names a public call (``explain()``, the CLI end to end, a web request), the anchor it
is timed against in turns, and the largest ratio call / anchor it may reach (``max_ratio``:
0.5 means "at least 2x faster"), or for an absolute goal the most milliseconds (``max_ms``).
``source`` says where the goal comes from: the README's speed table (the wins it states, which
this check holds) or an issue. ``group`` is the fresh process that measures it
(:data:`benchmarks.check.GROUPS`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Goal:
    id: str
    group: str
    call: str
    """The public call, as a user writes it."""
    anchor: str
    """What it is timed against (a reference library, the bare model's floor, the task call)."""
    max_ratio: float | None = None
    max_ms: float | None = None
    source: str = ""

    @property
    def bound(self) -> str:
        """The goal in words: "<= 0.50x" or "< 50 ms"."""
        return f"<= {self.max_ratio:.2f}x" if self.max_ratio is not None else f"< {self.max_ms:.0f} ms"


EXPLAIN = "explain(model, x, method={})"
FLOOR_FWD = "floor: the same number of plain forwards"

LAYER4 = ", layer='layer4'"
CAM_FAMILY = [("hirescam", "HiResCAM", LAYER4, "8 x 224^2"), ("xgradcam", "XGradCAM", LAYER4, "8 x 224^2"),
              ("layercam", "LayerCAM", LAYER4, "8 x 224^2"), ("eigencam", "EigenCAM", LAYER4, "8 x 224^2"),
              ("eigengradcam", "EigenGradCAM", LAYER4, "8 x 224^2"),
              ("fullgrad", "FullGrad", "", "8 x 224^2"),
              ("ablationcam", "AblationCAM", LAYER4, "1 x 112^2, 512 channels")]
"""benchmarks/cam_family.py's methods: name, pytorch-grad-cam's class, layer, the batch."""

GOALS: list[Goal] = [
    # -- forward-only methods: the inference fast path (issue 23 item 1) -----------------------
    Goal("occlusion-captum", "occlusion", EXPLAIN.format("'occlusion', window=32, stride=16"),
         "Captum Occlusion, default perturbations_per_eval=1 (169 windows)", max_ratio=0.5,
         source="issue 23 acceptance: at least 2x faster than Captum's default"),
    Goal("occlusion-floor", "occlusion", EXPLAIN.format("'occlusion', window=32, stride=16"),
         "floor: 169 plain forwards at the best batch", max_ratio=0.65,
         source="README: 0.62x the plain-forward floor"),
    Goal("rise-floor", "rise", EXPLAIN.format("'rise', masks=512"), FLOOR_FWD, max_ratio=0.62,
         source="issue 23: back at its figure before issues 12-16 (2.17 s for 512 masks, "
                "about 0.58x the floor)"),
    Goal("lime-lime", "lime", EXPLAIN.format("'lime', samples=500"),
         "lime package, same segments and samples, batch_size=10", max_ratio=0.67,
         source="README / issue 23: at least 1.5x faster than `lime` (1.67x)"),
    Goal("lime-floor", "lime", EXPLAIN.format("'lime', samples=500"), FLOOR_FWD, max_ratio=0.62,
         source="README: 0.58x the floor; issue 23: back at its figure before issues 12-16"),
    Goal("scorecam-floor", "scorecam", EXPLAIN.format("'scorecam'"),
         "floor: one plain forward per scored channel", max_ratio=0.75,
         source="issue 23: Score-CAM keeps its gain (2.55 s, was 5.66 s)"),
    # -- gradient methods against Captum and the floor -----------------------------------------
    Goal("gradcam-captum", "gradients", EXPLAIN.format("'gradcam'"), "Captum LayerGradCam, same layer",
         max_ratio=1.05, source="README: Grad-CAM at or below Captum (5% for timing noise)"),
    Goal("saliency-captum", "gradients", EXPLAIN.format("'saliency'"), "Captum Saliency",
         max_ratio=1.10, source="README: gradient methods 0.96-1.10x Captum"),
    Goal("ig-captum", "gradients", EXPLAIN.format("'integrated_gradients', steps=50, batch_size=16"),
         "Captum IntegratedGradients, same steps and chunk", max_ratio=1.10,
         source="README: gradient methods 0.96-1.10x Captum"),
    Goal("saliency-floor", "gradients", EXPLAIN.format("'saliency'"),
         "floor: one forward+backward", max_ratio=1.20,
         source="README: gradient methods 0.86-1.06x a forward+backward per pass (goal 1.2x)"),
    Goal("explain-overhead", "gradients", EXPLAIN.format("'gradcam'"),
         "the Grad-CAM method object (1 + explain()'s own time / method)", max_ratio=1.05,
         source="README: explain() adds at most 5.0% to the method"),
    Goal("deeplift-captum", "deeplift", EXPLAIN.format("'deeplift'"),
         "Captum DeepLift on the ReLU-pair rewrite (correct on ReLU6)", max_ratio=0.6,
         source="README: Captum on a ReLU rewrite 2.2x slower"),
    Goal("lrp-zennit", "lrp", EXPLAIN.format("'lrp'"), "zennit EpsilonGammaBox, same composite",
         max_ratio=0.6, source="README: zennit 2.1-2.4x slower"),
    Goal("crp-lrp", "crp", "crp(model, x, layer='_blocks.10', channels=range(8))",
         "8 calls of explain(model, x, method='lrp')", max_ratio=1.2,
         source="issue 21: CRP for K channels at most 1.2x K LRP passes"),
    Goal("crp-zennit-crp", "crp", "crp(model, x, layer='_blocks.10', channels=range(8))",
         "zennit-crp CondAttribution, EpsilonGammaBox, the 8 conditions as one batch", max_ratio=1.0,
         source="issue 21: CRP beside zennit-crp on the same work"),
    # -- the CAM family against pytorch-grad-cam (issue 22), run in the zoo venv ------------------
    *[Goal(f"{name}-gradcam-lib", "cam_family", EXPLAIN.format(f"'{name}'{where}, target=[...]"),
           f"pytorch-grad-cam {cls}, same layer, batch and targets (ResNet-18, {batch})",
           max_ratio=1.10, source="issue 22: each new CAM at most 1.1x pytorch-grad-cam's cost")
      for name, cls, where, batch in CAM_FAMILY],
    # -- the command line and the web -----------------------------------------------------------
    Goal("cli-script", "cli", "convscope explain sample:cat --method gradcam --out map.png",
         "a fresh `python -c` doing the same: import, explain(), save the overlay", max_ratio=1.10,
         source="issue 23 item 3: the CLI end to end; bound as the web's (1.1x the task)"),
    Goal("web-gradcam", "web", "POST /api/explain gradcam (wait), the map's levels in the answer",
         "the task call explain(model, 'sample:cat', 'gradcam')", max_ratio=1.10,
         source="issue 23 item 5: at most 1.1x the task call"),
    Goal("web-occlusion", "web",
         "POST /api/explain occlusion window=32 stride=16 (wait), the map's levels in the answer",
         "the task call explain(model, 'sample:cat', 'occlusion', ...)", max_ratio=1.10,
         source="issue 23 item 5: at most 1.1x the task call"),
    Goal("web-cached", "web", "the Grad-CAM request again, answered from the cache",
         "absolute", max_ms=50, source="issue 23 item 5: cached answers under 50 ms"),
    Goal("web-cached-visualization", "web", "GET a cached feature visualization + its picture",
         "absolute", max_ms=50, source="README: cached feature visualization, goal 50 ms"),
    # -- the standard metrics (issue 22 item 3): benchmarks/metrics_bench.py ------------------
    Goal("road-floor", "road", "road(model, x, gradcam_maps, targets, steps=50) over 4 images",
         "floor: the 200 imputed rows scored on the same fast path", max_ratio=1.2,
         source="issue 22 acceptance: ROAD over a batch costs at most 1.2x the forwards it needs"),
    Goal("max-sensitivity-quantus", "metrics-quantus",
         "max_sensitivity(model, x, maps, targets, saliency, samples=10) over 4 images",
         "quantus.MaxSensitivity, same explain function and samples (zoo venv only)", max_ratio=0.5,
         source="issue 22 acceptance: a metric Quantus also computes, at least 2x faster"),
    Goal("map-metrics-quantus", "metrics-quantus",
         "sparseness + complexity + relevance_rank on 16 maps of 224x224",
         "quantus.Sparseness, Complexity, RelevanceRankAccuracy (zoo venv only)", max_ratio=0.5,
         source="issue 22 acceptance: a metric Quantus also computes, at least 2x faster"),
    # -- concepts (issue 21): benchmarks/concepts_bench.py ---------------------------------------
    Goal("tcav-floor", "tcav", "tcav(lite0, 2 concepts, 7 random sets, 20 images each, 2 layers)",
         "floor: a plain forward of every example, a forward+backward of every input", max_ratio=1.2,
         source="issue 21 acceptance: TCAV costs at most 1.2x the forward and backward passes it needs"),
    Goal("tcav-captum", "tcav", "tcav(lite0, 2 concepts, 7 random sets, 20 images each, 2 layers)",
         "Captum TCAV.interpret, same sets, layers and inputs, its default classifier", max_ratio=1.0,
         source="issue 21 acceptance: compared with Captum's TCAV on the same work"),
    # -- detectors (issue 20): the shipped digits_detector, one held-out scene -----------------
    Goal("drise-floor", "detection", EXPLAIN.format("'drise', masks=512, batch_size=64"),
         "floor: 512 plain forwards of the detector, 64 per pass", max_ratio=1.10,
         source="issue 20 acceptance: D-RISE with N masks at most 1.1x N batched forwards"),
    Goal("gradcam-detection-floor", "detection", EXPLAIN.format("'gradcam', target=Detection(...)"),
         "floor: one forward+backward of the detection's score", max_ratio=1.10,
         source="issue 20 acceptance: Grad-CAM of one detection at most 1.1x a forward+backward"),
]
