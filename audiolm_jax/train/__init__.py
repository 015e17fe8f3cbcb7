"""The training engine: one sharded trainer for every AudioLM model (see trainer.py, task.py)."""
