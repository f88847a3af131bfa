"""Evaluation: task scores before and after fine-tuning, and the forgetting they show."""
