"""Training as Ray Train jobs: the worker's TrainContext (context.py), the job that trains one model of the
table on Ray and its driver (job.py), what its final checkpoint holds (checkpoint.py), the command line
(cli.py, run as `python -m training.ray_jobs`) and the Ray-against-plain-PyTorch benchmark (bench.py)."""
