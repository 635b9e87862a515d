"""More geometry along the same path (docs/analyses.md), one module per analysis, each a stage
`nwt <analysis>` and a rule of workflow/rules/analyses.smk, switched by config `analyses`:

    interpolation   the loss along the straight segment from each checkpoint to w*
    sharpness       the top Hessian eigenvalue at each checkpoint, beside the optimizer's threshold
    plane           the checkpoints on the top two principal directions of {w_t - w*}, and the loss
                    on a grid of that plane
    orthogonal      the cosine between the parts of g_t and g_{t+k} orthogonal to the direction
                    to w*, from a replay of the training steps

What they share (the model at a point of weight space, a fixed evaluation set) is evaluation.py;
their figures are report/analysis_figures.py. Importing this package imports no torch.
"""
