"""Adaptation from target audio alone (source-free): AdaBN, TENT, SHOT and a file-aware variant, the
label-free estimates of target accuracy, and the guard that keeps the original model when adaptation
is expected to hurt. Imports ``training``, ``infer``, ``nn`` and ``data``; below ``report`` and ``api``.
"""
