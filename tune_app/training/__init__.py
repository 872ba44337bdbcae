"""Training with torch (no Ray): data, model, loss, monitors, the trainer, checkpoints."""
