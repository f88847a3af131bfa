"""Fine-tuning: the loop (one process) and the stage that feeds it and writes its outputs."""
