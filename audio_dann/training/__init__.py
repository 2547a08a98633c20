"""Training layer: batches, schedules, the loop, label-free selection criteria, and ``train()``.

Imports ``nn`` and ``data`` below it, never ``infer`` or ``report``. (Named ``training``, not
``train``, so that the public function ``audio_dann.train`` is never shadowed by a subpackage.)
"""
