"""Training layer: the plan, batches, schedules, the loop, the domain-adversarial loss, label-free
selection criteria, checkpoints and ``train()``.

Imports ``adaptation``, ``nn`` and ``data`` below it, never ``infer`` or ``report``; only
:mod:`.plan` names a self-training method (the stage a method resolves to); :mod:`audio_dann.adaptation.stage`
runs it.
(Named ``training``, not ``train``, so that the public function ``audio_dann.train`` is never shadowed.)
"""
