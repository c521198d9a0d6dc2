"""The Trainer every task uses: the run's logging and seed (setup_run), PipelineTrainer (stops at a non-finite loss,
shuffled length-grouped batches, evaluation in dataset order, saves that name what failed), and make_trainer, which
adds the callbacks: a W&B callback that cannot crash the run, the run's metadata in W&B, and Ctrl-C/SIGTERM handling.

Loading the model is in model_loading.py, the run's files in run_outputs.py, finding checkpoints in checkpoints.py.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import datasets
import torch
import transformers
from transformers import set_seed
from transformers.integrations import WandbCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

from pipelines import interruptions, tracking
from pipelines.checkpoints import resolve_resume_checkpoint
from pipelines.errors import RunStoppedError
from pipelines.run_outputs import write_json

logger = logging.getLogger("pipelines")


def setup_run(training_args) -> None:
    """Logging on every process (quiet on non-main ones) and seeds, before anything is loaded."""
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    level = logging.INFO if training_args.process_index == 0 else logging.WARNING
    for name in ("pipelines", __name__):
        logging.getLogger(name).setLevel(level)
    transformers.utils.logging.set_verbosity(logging.WARNING)
    datasets.utils.logging.set_verbosity(logging.WARNING)
    if training_args.run_name is None:
        training_args.run_name = Path(training_args.output_dir).name
    set_seed(training_args.seed)


class NonFiniteLossError(RunStoppedError, RuntimeError):
    """The training loss became NaN or infinite; the run stops instead of training on garbage."""


class ShuffledLengthGroups(torch.utils.data.Sampler):
    """The batches of transformers' LengthGroupedSampler, in random order.

    transformers sorts each megabatch of 50 batches by length, so training sees runs of batches going from long to
    short pairs. On the MNLI CPU recipe that cost about 1.2 accuracy points against random batches; the same
    length-grouped batches in shuffled order cost none and keep the padding savings (RESULTS.md, speed levers).
    One "batch" here is what one optimizer step sees (batch size x gradient accumulation), as in transformers.
    """

    def __init__(self, grouped: LengthGroupedSampler):
        self.grouped = grouped

    def __len__(self) -> int:
        return len(self.grouped)

    def __iter__(self):
        indices = list(self.grouped)
        size = self.grouped.batch_size
        batches = [indices[i : i + size] for i in range(0, len(indices), size)]
        order = torch.randperm(len(batches), generator=self.grouped.generator).tolist()
        return iter([index for b in order for index in batches[b]])


class PipelineTrainer(transformers.Trainer):
    """The Trainer, stopping at the first non-finite loss with a message that names the step.

    The Trainer's `logging_nan_inf_filter` would only hide NaN losses from the logged average. Stopping keeps the
    last good checkpoint as it is: nothing is saved after the bad step.
    """

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not torch.isfinite(loss).all():
            checkpoint = resolve_resume_checkpoint(self.args, value="auto")
            raise NonFiniteLossError(
                f"The training loss is {loss.item()} at step {self.state.global_step + 1} "
                f"(epoch {self.state.epoch or 0:.2f}). Training stopped. "
                + (f"The last good checkpoint is {checkpoint}." if checkpoint else "No checkpoint was saved before it.")
                + " Lower the learning rate, use bf16 rather than fp16, or check the inputs of that step."
            )
        return loss

    # When set, every evaluation draws the same random numbers (pretraining's masks and ELECTRA's sampled tokens), so
    # the held-out values of all checkpoints are comparable; training's own random stream is left as it was.
    eval_seed: int | None = None

    def evaluate(self, *args, **kwargs):
        if self.eval_seed is None:
            return super().evaluate(*args, **kwargs)
        with torch.random.fork_rng(devices=[torch.cuda.current_device()] if torch.cuda.is_available() else []):
            torch.manual_seed(self.eval_seed)
            return super().evaluate(*args, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        """transformers' length grouping, with the order of its batches shuffled (see ShuffledLengthGroups)."""
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler):
            return ShuffledLengthGroups(sampler)
        return sampler

    def _get_eval_sampler(self, eval_dataset):
        """Evaluate in the dataset's order: predictions are matched to examples by position.

        transformers 5 also groups eval batches by length when training does (train_sampling_strategy), which
        returns predictions shuffled. Our task modules sort eval sets by length themselves, which keeps the order known.
        """
        if eval_dataset is None or not hasattr(eval_dataset, "__len__"):
            return None
        return torch.utils.data.SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

    def _save_checkpoint(self, model, trial):
        """A failed checkpoint save (full disk, unwritable folder) names the folder and the last complete checkpoint."""
        try:
            super()._save_checkpoint(model, trial)
        except interruptions.SaveFailedError:
            raise
        except interruptions.WRITE_ERRORS as error:
            last = resolve_resume_checkpoint(self.args, value="auto")
            folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
            raise interruptions.save_failed(error, folder, last) from error

    def _save(self, output_dir: str | None = None, state_dict=None):
        """Save as the Trainer does, but the training arguments as readable JSON with tokens removed,
        instead of the pickled training_args.bin (a pickle runs code when loaded, and it would hold hub_token)."""
        try:
            super()._save(output_dir, state_dict)
        except interruptions.WRITE_ERRORS as error:
            if Path(output_dir or self.args.output_dir).name.startswith("checkpoint-"):
                raise  # _save_checkpoint names it
            last = resolve_resume_checkpoint(self.args, value="auto")
            raise interruptions.save_failed(error, output_dir or self.args.output_dir, last) from error
        output_dir = Path(output_dir or self.args.output_dir)
        pickled = output_dir / "training_args.bin"
        if self.args.should_save and pickled.exists():
            pickled.unlink()
            write_json(output_dir / "training_args.json", self.args.to_dict())


class SafeWandbCallback(WandbCallback):
    """The Trainer's W&B callback, except that a W&B failure (bad key, no network, a crashed wandb process)
    never stops training: the first error is reported once and W&B is switched off for the rest of the run."""

    failed = False

    def _guarded(self, event: str, *args, **kwargs):
        if self.failed:
            return None
        try:
            return getattr(WandbCallback, event)(self, *args, **kwargs)
        except Exception as error:  # anything wandb raises must not end the run
            self.failed = True
            self._wandb = None
            output_dir = args[0].output_dir if args else "output_dir"
            logger.warning(
                "W&B failed during %s (%s: %s). Training goes on without W&B; the metrics are in %s "
                "(trainer_state.json, log_history.json and all_results.json).",
                event,
                type(error).__name__,
                error,
                output_dir,
            )
            return None

    # The events the Trainer sends WandbCallback, each through _guarded.
    def on_train_begin(self, *args, **kwargs):
        return self._guarded("on_train_begin", *args, **kwargs)

    def on_train_end(self, *args, **kwargs):
        return self._guarded("on_train_end", *args, **kwargs)

    def on_log(self, *args, **kwargs):
        return self._guarded("on_log", *args, **kwargs)

    def on_save(self, *args, **kwargs):
        return self._guarded("on_save", *args, **kwargs)

    def on_predict(self, *args, **kwargs):
        return self._guarded("on_predict", *args, **kwargs)

    def on_evaluate(self, *args, **kwargs):
        return self._guarded("on_evaluate", *args, **kwargs)

    def on_step_end(self, *args, **kwargs):
        return self._guarded("on_step_end", *args, **kwargs)

    def on_epoch_end(self, *args, **kwargs):
        return self._guarded("on_epoch_end", *args, **kwargs)


class RunInfoCallback(transformers.TrainerCallback):
    """Puts the run's metadata (recipe, parameter counts, commit, versions, hardware) in the W&B config."""

    def __init__(self, info: dict):
        self.info = info
        self.sent = False

    def _send(self, state):
        if not self.sent and state.is_world_process_zero:
            # precision also at the top level: the W&B table's column for "which precision did this run use"
            precision = (self.info.get("precision") or {}).get("precision")
            try:
                self.sent = tracking.update_wandb_config({"run_info": self.info, "precision": precision})
            except Exception as error:  # as SafeWandbCallback: a W&B failure never ends the run
                self.sent = True
                logger.warning(
                    "W&B did not take the run's metadata (%s: %s); run_info.json has it.", type(error).__name__, error
                )

    def on_train_begin(self, args, state, control, **kwargs):
        self._send(state)

    def on_log(self, args, state, control, **kwargs):
        self._send(state)


def make_trainer(info: dict, trainer_class: type | None = None, **trainer_kwargs) -> PipelineTrainer:
    """A PipelineTrainer (or the subclass given, e.g. distillation's) whose W&B callback cannot crash the run, and
    which sends the run's metadata to W&B."""
    trainer = (trainer_class or PipelineTrainer)(**trainer_kwargs)
    if trainer.pop_callback(WandbCallback) is not None:
        trainer.add_callback(SafeWandbCallback())
        # Only a run that reports to W&B sends its metadata there: a run without W&B must not write into a W&B run
        # that something else in the same process left open.
        trainer.add_callback(RunInfoCallback(info))
    trainer.add_callback(interruptions.StopOnSignal(trainer))
    return trainer
