"""Model evaluation: TFMA metrics per slice, the blessing gate, and its HTML report.

- `evaluation.gate`: score candidate and champion on the same data, run TFMA, decide.
- `evaluation.report`: the self-contained HTML report of that decision.
"""
