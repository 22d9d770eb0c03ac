"""Training: the launcher, the trainer module, and what keeps a multi-process run in step."""
