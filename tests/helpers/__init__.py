"""What the tests share: tiny runs, trajectories checked against the steps taken, a workflow
copy run with the real snakemake, a Slurm cluster, Debian packages, results compared."""
