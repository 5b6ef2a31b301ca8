"""The files that cross a pipeline stage, one module per record family, each with its one reader.

A record is written by one stage and read by later ones, so it sits below all of them: this package
imports only the ground floor (:mod:`nnunet_robustness.io`, :mod:`nnunet_robustness.errors`,
:mod:`nnunet_robustness.conditions`), never torch, and never the stages that write or read it
(``tests/test_layout.py`` checks both).

- :mod:`.run_manifest`: ``run.json`` of a ``run`` output folder (:class:`~.run_manifest.RunManifest`);
- :mod:`.input_change`: ``<condition>/<case>.input.json``, the change the model saw
  (:class:`~.input_change.InputChange`);
- :mod:`.item_view`: ``<condition>/<case>.view.npz``, the picture of what the model was given
  (:class:`~.item_view.ItemView`);
- :mod:`.context_fbr`: ``<condition>/<case>.fbr.json``, the crop of a context condition
  (:class:`~.context_fbr.ContextBox`);
- :mod:`.training_fbr`: ``<fold folder>/fbr_train.json``, the FBR of the training patches
  (:class:`~.training_fbr.TrainingFBR`);
- :mod:`.training_record`: ``<model folder>/robust_training_record.json``, what a robust trainer
  trained with (:class:`~.training_record.TrainingRecord`).
"""
