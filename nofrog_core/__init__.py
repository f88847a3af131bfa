"""nofrog: fine-tune a causal LM on new data without forgetting what it knew.

The library (this package) is plain Python + torch and never imports Prefect;
`flows/` and `tasks/` wrap it for orchestration.
"""

__version__ = "0.1.0"
