"""``convscope serve``: the same tasks as the CLI behind HTTP, with pages, jobs and a disk cache.

Import :func:`create_app` from :mod:`convscope.web.app`; this package imports FastAPI, so
``import convscope`` does not import it.
"""
