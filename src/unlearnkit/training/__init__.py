"""Training machinery shared by every loop (unlearning methods, fine-tuning): settings, callbacks,
checkpoints."""
