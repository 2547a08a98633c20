"""Deploy layer: ONNX export of a model bundle with the log-mel frontend inside, checked against PyTorch.

``onnx`` and ``onnxruntime`` are an optional extra (``pip install 'audio-dann[export]'``); they are
imported only when an export runs.
"""
