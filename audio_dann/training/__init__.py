"""Training layer: the plan, batches, schedules, the loop, the domain-adversarial loss, label-free
selection criteria, checkpoints and ``train()``.

Imports ``adaptation``, ``nn`` and ``data`` below it, never ``infer`` or ``report``; knows no
self-training method by name (the plan names the stage, :mod:`audio_dann.adaptation.stage` runs it).
(Named ``training``, not ``train``, so that the public function ``audio_dann.train`` is never shadowed.)
"""
