"""Inference under conditions (``nnunet-robust run``): a trained model loaded once through nnU-Net's
predictor, every case predicted clean and under each corruption (:mod:`.runner`, imports torch); the
test cases of an imagesTs folder (:mod:`.cases`) and the ``run.json`` record of the output folder
(:mod:`.manifest`), both torch-free for the readers downstream."""
