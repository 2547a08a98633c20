"""Inference layer: the prediction engine, table writers, ``predict``, ``evaluate`` and metrics.

Imports ``nn`` and ``data`` below it; never ``training`` or ``report``.
"""
