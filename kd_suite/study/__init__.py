"""KD studies: a teacher, the student alone and each distillation variant over seeds, run and reported together."""
