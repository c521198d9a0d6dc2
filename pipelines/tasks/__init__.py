"""The task runs: what trains and evaluates a task, one module per family of tasks.

glue.py (every GLUE classification or regression task), mnli.py (MNLI's extras on it), qa.py (SQuAD, KorQuAD; local
files in squad_files.py), mlm.py (MLM or ELECTRA pretraining; electra.py), kind_run.py (any task whose TaskKind
defines its own data, collator and metrics). What a task is (its name, kind, labels, metrics) lives apart, in
pipelines/task_definitions, so that reading a finished run's task imports no training code.
"""
