"""KD studies: a teacher, the student alone and each distillation variant over seeds, run and reported together.

:mod:`.spec` reads a study file, :mod:`.runner` trains its runs, :mod:`.summary` writes ``study.json`` and
:mod:`.report` turns the study folder into ``report.md`` and a self-contained ``report.html``.
"""
