"""Training: the loop the harness owns for every method (pretraining and fine-tuning)."""
