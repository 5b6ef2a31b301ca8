"""From per-case metrics to answers: statistics (:mod:`.statistics`), the evaluation that ties metrics
and statistics together (:mod:`.evaluation`), the training-FBR annotation of the context study
(:mod:`.fbr`) and the architecture recommendation (:mod:`.recommend`).

Nothing here imports torch: it works on tables.
"""
