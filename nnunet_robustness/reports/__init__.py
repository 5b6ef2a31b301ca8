"""Self-contained HTML reports: one page shell and its helpers (:mod:`.html`), the evaluation report
(:mod:`.evaluation`, ``eval``) and the trust report (:mod:`.trust`, ``rate``)."""
