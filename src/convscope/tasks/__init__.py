"""Tasks: the jobs a user asks for, as typed functions that return dataclasses.

Each module joins ``data`` (loading), ``model``, ``methods`` and ``render`` for one job, with no
argparse and no printing; long jobs report progress through an optional callback. The CLI, the
Python API (``convscope.explain`` ...) and the web app all call these, so every surface gives the
same answer.

One module per job (``explain``, ``report``, ``evaluate``, ``predict``, ``layers``, ``retrofit``, ``inside``,
``visualize``, ``synthesis``, ``adversarial``, ``fast_style``, ``scan``, ``atlas``, ``project``)
and ``inputs``, what every task accepts as images. Nothing is re-exported here, so that no
function hides the module of the same name (``convscope.tasks.report`` is the module); the
public names are exported by :mod:`convscope`.
"""
