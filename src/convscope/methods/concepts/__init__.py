"""Concepts: what a layer's features stand for, beyond single units (TCAV, concept discovery,
CRP, dissection). Tensors in, tensors out, like every package of ``methods``."""
