"""Study machinery: the runs a stage performs over a dataset (attack runs, robustness curves, the DIP
study, adaptive attacks through a purifier, certification) and the tables they write.

Plug-in folders hold plug-ins only (``attacks/``: attacks, ``defenses/``: purifiers); what runs
them over a dataset and writes CSV/JSON lives here, one layer above both.
"""
