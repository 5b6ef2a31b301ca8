"""Inference under conditions (``nnunet-robust run``): a trained model loaded once through nnU-Net's
predictor, every case predicted clean and under each corruption (:mod:`.runner`, imports torch); the
test cases of an imagesTs folder (:mod:`.cases`, torch-free). The files ``run`` writes for the readers
downstream (``run.json``, each item's input change, view and context crop) are records:
:mod:`nnunet_robustness.records`."""
