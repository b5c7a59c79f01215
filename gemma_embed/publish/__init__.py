"""Publishing: the model card (filled from a run's files), the run's plots, and the upload to the Hub."""
