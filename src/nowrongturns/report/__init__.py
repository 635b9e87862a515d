"""Figures and claims: per-run figures (figures.py, analysis_figures.py), figures across runs
(comparisons.py), the claims table (claims.py), their shared style (style.py).
"""
