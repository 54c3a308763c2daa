"""Models trained by the pipeline."""
