"""Report layer: plots, the run report, ranking of finished runs. The top of the library: may import
``training``, ``infer``, ``nn`` and ``data``; nothing below imports it.
"""
