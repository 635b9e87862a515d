"""The schedule stage (stage.py): the step size eta* derived from the geometry, its fitted family
(fit.py), the convergence bound (bound.py), and the closed loop's comparison (closed_loop.py).
"""
