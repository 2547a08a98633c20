"""Networks: the log-mel frontend, backbones, heads, DANN, the batched forward pass, inference folding
and the saved bundle.

Plain ``nn.Module``s with no training code. Imports only ``config``, ``errors``, ``files`` and ``runtime``.
"""
