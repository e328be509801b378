"""Studies: a teacher, baseline students and KD variants trained over several seeds, compared in one report."""
