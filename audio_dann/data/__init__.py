"""Data layer: reading audio, finding inputs, manifests, synthetic data, the feature store, ``prepare``.

Imports only ``config``, ``errors``, ``files`` and ``runtime`` from above it, and ``nn.frontend``
for the log-mel computation that ``prepare`` caches.
"""
