"""Knowledge distillation: teachers, ensemble soft targets, the KD loss, and the distill run."""
