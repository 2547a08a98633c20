"""Adaptation from target audio alone (``adapt``): decoding the target, the source-free methods of
:mod:`audio_dann.training.self_training`, the label-free estimates before and after, and the guard that
keeps the original model when adaptation is expected to hurt. Imports ``training``, ``nn`` and ``data``.
"""
