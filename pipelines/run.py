"""The run sequence every task uses: parse the recipe, load, train, save, evaluate, write the outputs, push.

A task module subclasses `TaskRun`, fills in its steps (load_data, load_model, preprocess, trainer_options,
evaluate; optionally describe and before_training), and its `main` is `TaskRun.main(argv)`:

    class MnliRun(TaskRun):
        name, task, data_arguments = "mnli", TASK, MnliDataArguments
        ...

    def main(argv=None):
        return MnliRun.main(argv)

`TaskRun.run` below is the sequence, top to bottom, the same for every task.
"""

from __future__ import annotations

from pathlib import Path

import datasets
from transformers import TrainingArguments

from pipelines import (
    checkpoints,
    distillation,
    hub_push,
    interruptions,
    model_loading,
    precision,
    run_guard,
    run_lock,
    run_outputs,
    training,
)
from pipelines.arguments import ModelArguments, TrackingArguments, parse_recipe
from pipelines.lora import PeftArguments
from pipelines.run_guard import RunArguments


def metric_prefix(split: str) -> str:
    """all_results.json's prefix of an eval split's metrics: eval_ for validation, eval_<name>_ for
    validation_<name> (MNLI's eval_matched_ / eval_mismatched_)."""
    return "eval" if split == "validation" else f"eval_{split.replace('validation_', '')}"


class TaskRun:
    """One run of one task. Subclasses set the class attributes and the steps marked 'a task's step'."""

    name: str  # recorded in run_info.json as "task"
    data_arguments: type  # the task's data dataclass
    task = None  # its pipelines.task_definitions.base.Task (a subclass may set it once the arguments are parsed)
    uses_lora = True  # parse PeftArguments and apply LoRA when the recipe asks (pretraining: no)
    push_at_end = True  # take over push_to_hub and push at the end, with a model card
    distills = False  # parse DistillationArguments: a `teacher` can label the training data (pipelines/distillation.py)

    def __init__(self, argv: list[str] | None = None):
        classes = [ModelArguments, self.data_arguments, TrackingArguments, RunArguments, TrainingArguments]
        if self.uses_lora:
            classes.insert(3, PeftArguments)
        if self.distills:
            classes.append(distillation.DistillationArguments)
        parsed = list(parse_recipe(tuple(classes), argv))
        self.distill_args = parsed.pop(-2) if self.distills else None
        self.model_args, self.data_args, self.tracking_args = parsed[:3]
        self.peft_args = parsed.pop(3) if self.uses_lora else None
        self.run_args, self.training_args, self.recipe = parsed[3:]

    @classmethod
    def main(cls, argv: list[str] | None = None) -> dict:
        return cls(argv).run()

    # --- The sequence ---------------------------------------------------------------------------------------

    def run(self) -> dict:
        args = self.training_args
        # The precision is chosen here, not while parsing the recipe: it probes the hardware (a small timed matmul)
        # and prints its choice; run_info.json records it (run_outputs.run_info).
        precision.apply(self.model_args.precision, self.recipe, args)
        run_guard.check_numbers(self.data_args, self.peft_args, args)
        push_request = hub_push.take_over_trainer_push(args) if self.push_at_end else None
        training.setup_run(args)
        run_guard.check_writable(Path(args.output_dir))
        # One writer per output folder, from before the first look at it until the run ends, however it ends.
        with run_lock.hold(args.output_dir, main_process=args.process_index == 0):
            try:
                return self.run_in_locked_folder(args, push_request)
            except OSError as error:  # a write of the Trainer or the task into the folder (full disk, ...)
                if not interruptions.wrote_into(error, args.output_dir):
                    raise
                last = checkpoints.newest_checkpoint(args.output_dir)
                raise interruptions.write_failed(error, error.filename, args.output_dir, last) from error

    def run_in_locked_folder(self, args, push_request) -> dict:
        resume_from = checkpoints.resolve_resume_checkpoint(args)
        run_guard.check_output_dir(args, self.run_args, resume_from)
        self.adjust_arguments()

        # With distill_transfer, the teacher-labelled transfer set is read here with the train split.
        raw, transfer = distillation.load_data_with_transfer_set(self)
        tokenizer = model_loading.load_tokenizer(self.model_args)
        model = self.load_model(tokenizer)
        if self.uses_lora:
            model = model_loading.apply_peft(model, self.peft_args, self.task)
        self.teacher = distillation.Distillation.for_run(self)  # None without a teacher
        if self.teacher is not None:
            self.teacher.initialize_student(model, tokenizer)
        features = self.preprocess(raw, tokenizer)
        run_guard.make_room(args, self.run_args, resume_from)
        if self.teacher is not None:
            features = self.teacher.label_training_data(raw, features, tokenizer, transfer)
        info = self.start_outputs(model, raw, features)
        make_trainer = self.teacher.make_trainer if self.teacher is not None else training.make_trainer
        trainer = make_trainer(
            info, model=model, args=args, processing_class=tokenizer, **self.trainer_options(features, tokenizer)
        )

        all_results, tables = self.train_and_evaluate(trainer, raw, features, tokenizer, resume_from)
        run_outputs.finish_run(trainer, all_results, tables)
        if push_request is not None and trainer.is_world_process_zero():
            hub_push.push_after_run(args.output_dir, push_request)
        return all_results

    def train_and_evaluate(self, trainer, raw, features, tokenizer, resume_from) -> tuple[dict, dict]:
        """Train (when there is a train split), save, evaluate. A LoRA model is saved after evaluation, since
        saving merges the adapters into the model in place."""
        lora = self.peft_args is not None and self.peft_args.use_lora
        training_split = "train" in features
        self.before_training(trainer)
        all_results = {}
        if training_split:
            train_result = trainer.train(resume_from_checkpoint=resume_from)
            if not lora:
                model_loading.save_trained_model(trainer, self.peft_args, tokenizer)
            trainer.save_state()
            all_results.update(train_result.metrics)
            trainer.log_metrics("train", train_result.metrics)
        metrics, tables = self.evaluate(trainer, raw, features)
        all_results.update(metrics)
        if lora and training_split:
            model_loading.save_trained_model(trainer, self.peft_args, tokenizer)
        return all_results, tables

    def start_outputs(self, model, raw, features) -> dict:
        """W&B, recipe.yaml and run_info.json (with what `describe` adds); returns the run info."""
        extra = self.describe(raw, features)
        if getattr(self, "teacher", None) is not None:
            extra["teacher"] = self.teacher.description
        return run_outputs.start_outputs(
            self.name, self.model_args, self.tracking_args, self.training_args, self.recipe, model, extra
        )

    # --- A task's steps -------------------------------------------------------------------------------------

    def adjust_arguments(self) -> None:
        """Change training arguments the task needs set a certain way (before any data is loaded)."""

    def load_data(self) -> datasets.DatasetDict:
        raise NotImplementedError

    def load_model(self, tokenizer):
        raise NotImplementedError

    def preprocess(self, raw, tokenizer) -> datasets.DatasetDict:
        raise NotImplementedError

    def describe(self, raw, features) -> dict:
        """What run_info.json records about the data (example counts)."""
        return {}

    def trainer_options(self, features, tokenizer) -> dict:
        """train_dataset, eval_dataset, data_collator, compute_metrics for the Trainer."""
        raise NotImplementedError

    def before_training(self, trainer) -> None:
        """Anything measured before training (pretraining's perplexity)."""

    def evaluate(self, trainer, raw, features) -> tuple[dict, dict]:
        """(metrics for all_results.json, W&B tables) after training; the task also writes its predictions files."""
        raise NotImplementedError
