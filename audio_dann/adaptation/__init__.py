"""Everything that uses target audio alone: the source-free methods (:mod:`.methods`, one file each),
the target clips (:mod:`.target`), the latent recording conditions (:mod:`.conditions`), the
label-free estimates (:mod:`.estimators`), the guard (:mod:`.guard`), the ``--reference`` models
(:mod:`.references`), ``train``'s self-training stage (:mod:`.stage`) and the ``adapt`` and
``estimate`` commands. Imports ``nn``, ``data`` and the base modules; ``training`` imports it.
"""
