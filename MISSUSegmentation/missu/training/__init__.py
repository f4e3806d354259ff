"""``missu train``: the MISSU recipe with self-distillation, resumable, JSON progress, DDP with torchrun."""
