"""What a task is: its name, kind, inputs, labels and metrics (base.py), for GLUE (glue_tasks.py) and extractive QA
(qa_tasks.py). Light to import: the runs that train a task are in pipelines/tasks."""
