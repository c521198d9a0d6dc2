"""A study file read and checked: its arms, jobs, resources and search section (pipelines/study.py runs it).

Only reading: nothing here starts a job or imports training code, so a study can be inspected (`--dry-run`, the
tests, a report) cheaply. The format is described in study.py, the resources in study_backends.py, the search
section in search.py.
"""

from __future__ import annotations

import difflib
import itertools
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from pipelines import run_guard
from pipelines.arguments import RecipeError, load_recipe
from pipelines.errors import UserInputError

STUDY_KEYS = {
    "name",
    "description",
    "script",
    "launch_config",
    "recipe",
    "overrides",
    "seeds",
    "arms",
    "grid",
    "baseline",
    "output_root",
    "report_dir",
    "resources",
    "search",
}
ARM_KEYS = {"name", "job_type", "recipe", "overrides"}
# Set per job on the command line, so they are dropped from the arm's recipe file.
PER_JOB_KEYS = ("output_dir", "seed", "run_name", "wandb_group", "wandb_job_type", "resume_from_checkpoint")


class StudyError(UserInputError, ValueError):
    """A study file that cannot be run; the message names the file and the key."""


@dataclass
class Arm:
    name: str
    job_type: str
    recipe: dict[str, Any]  # base recipe + study overrides + arm overrides + grid values, per-job keys removed
    recipe_source: str  # the recipe file it started from


@dataclass
class Job:
    arm: Arm
    seed: int
    output_dir: Path

    @property
    def run_name(self) -> str:
        return f"{self.arm.name}-seed{self.seed}"

    @property
    def finished(self) -> bool:
        return run_guard.holds_finished_run(self.output_dir)

    @property
    def checkpoints(self) -> list[Path]:
        return sorted(self.output_dir.glob("checkpoint-*/trainer_state.json")) if self.output_dir.is_dir() else []


@dataclass
class Study:
    name: str
    path: Path
    script: Path
    launch_config: Path | None
    arms: list[Arm]
    seeds: list[int]
    output_root: Path
    report_dir: Path
    baseline: str
    resources: dict[str, Any]  # per job: gpus, cpus, mem_gb, time_min, partition, ... (see study_backends.py)
    search: Any = None  # a SearchSpec when the study file has a `search:` section

    def jobs(self) -> list[Job]:
        return [Job(arm, seed, self.output_root / arm.name / f"seed{seed}") for seed in self.seeds for arm in self.arms]


# --------------------------------------------------------------------------------------------------------------
# Reading a study file
# --------------------------------------------------------------------------------------------------------------


def load_study(path: str | os.PathLike, check_files: bool = True) -> Study:
    """Read and check a study file: unknown keys, missing files, arm names, and each arm's merged recipe.

    check_files=False skips the file checks (and leaves recipes unloaded where their file is missing): for
    inspecting a study whose recipes another step will create.
    """
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"Study file not found: {path}")
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise StudyError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(spec, dict):
        raise StudyError(f"{path}: a study is a mapping (name, script, recipe, arms, seeds, ...)")
    check_keys(spec, STUDY_KEYS, str(path))
    for key in ("name", "script", "arms", "seeds"):
        if not spec.get(key):
            raise StudyError(f"{path}: '{key}' is required")
    name = str(spec["name"])
    seeds = spec["seeds"]
    if not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise StudyError(f"{path}: 'seeds' must be a list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise StudyError(f"{path}: 'seeds' repeats a seed: {seeds}")

    script = Path(spec["script"])
    launch_config = Path(spec["launch_config"]) if spec.get("launch_config") else None
    if check_files:
        require_file(script, "script", path)
        if launch_config is not None:
            require_file(launch_config, "launch_config", path)

    arms = expand_arms(spec, path, check_files)
    baseline = spec.get("baseline") or arms[0].name
    if baseline not in [a.name for a in arms]:
        raise StudyError(
            f"{path}: baseline '{baseline}' is not an arm; the arms are: {', '.join(a.name for a in arms)}"
        )
    output_root = Path(spec.get("output_root") or f"outputs/studies/{name}")
    resources = check_resources(spec.get("resources") or {}, path)
    study = Study(
        name=name,
        path=path,
        script=script,
        launch_config=launch_config,
        arms=arms,
        seeds=seeds,
        output_root=output_root,
        report_dir=Path(spec.get("report_dir") or output_root / "report"),
        baseline=baseline,
        resources=resources,
    )
    if spec.get("search") is not None:
        study.search = parse_search(spec["search"], study)
        apply_best_values(study)  # the searched arms train with the values the search chose
    return study


def select(study: Study, arms: list[str] | None = None, seeds: list[int] | None = None) -> Study:
    """The study restricted to some of its arms and seeds (run_study.py --arms/--seeds): the same job folders, so a
    later run of the whole study skips what the part finished. The baseline arm must stay in."""
    known_arms = [arm.name for arm in study.arms]
    for name in arms or []:
        if name not in known_arms:
            raise StudyError(f"{study.path}: --arms: '{name}' is not an arm; the arms are: {', '.join(known_arms)}")
    for seed in seeds or []:
        if seed not in study.seeds:
            raise StudyError(f"{study.path}: --seeds: {seed} is not a seed of the study ({study.seeds})")
    if arms and study.baseline not in arms:
        raise StudyError(
            f"{study.path}: --arms must include the baseline arm '{study.baseline}' (the report compares to it)"
        )
    return replace(
        study,
        arms=[arm for arm in study.arms if not arms or arm.name in arms],
        seeds=[seed for seed in study.seeds if not seeds or seed in seeds],
    )


def check_keys(mapping: dict, known: set[str], where: str) -> None:
    for key in mapping:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            raise StudyError(
                f"{where}: unknown key '{key}'."
                + (f" Did you mean '{close[0]}'?" if close else "")
                + f" Known keys: {', '.join(sorted(known))}"
            )


def require_file(file: Path, key: str, study_path: Path) -> None:
    if not file.is_file():
        raise StudyError(
            f"{study_path}: {key} '{file}' not found (relative to {Path.cwd()}; run studies from the repository root)"
        )


def expand_arms(spec: dict, path: Path, check_files: bool) -> list[Arm]:
    """The study's arms, each repeated for every combination of the grid's values, with merged recipes."""
    if not isinstance(spec["arms"], list):
        raise StudyError(f"{path}: 'arms' must be a list of mappings with a name")
    grid = grid_variants(spec.get("grid") or {}, path)
    arms, recipes = [], {}
    for index, arm_spec in enumerate(spec["arms"]):
        where = f"{path}: arms[{index}]"
        if not isinstance(arm_spec, dict) or not arm_spec.get("name"):
            raise StudyError(f"{where}: an arm is a mapping with at least a name")
        check_keys(arm_spec, ARM_KEYS, where)
        recipe_file = arm_spec.get("recipe") or spec.get("recipe")
        if not recipe_file:
            raise StudyError(f"{where}: no recipe (set 'recipe' for the study or for this arm)")
        if recipe_file not in recipes:
            if Path(recipe_file).is_file():
                try:
                    recipes[recipe_file] = load_recipe(recipe_file)
                except RecipeError as error:
                    raise StudyError(f"{where}: {error}") from error
            elif check_files:
                raise StudyError(
                    f"{where}: recipe '{recipe_file}' not found (relative to {Path.cwd()}; run studies from "
                    "the repository root)"
                )
            else:
                recipes[recipe_file] = None
        for label, grid_overrides in grid:
            name = f"{arm_spec['name']}_{label}" if label else str(arm_spec["name"])
            base = recipes[recipe_file]
            recipe = merge(base or {}, spec.get("overrides"), arm_spec.get("overrides"), grid_overrides)
            if base is not None:
                check_model_keys(recipe, name, recipe_file, path)
            arms.append(
                Arm(
                    name=name,
                    job_type=str(arm_spec.get("job_type") or arm_spec["name"]),
                    recipe=recipe,
                    recipe_source=str(recipe_file),
                )
            )
    names = [a.name for a in arms]
    for name in names:
        if names.count(name) > 1:
            raise StudyError(f"{path}: two arms are named '{name}'")
        if "/" in name or "=" in name or name != name.strip() or " " in name:
            raise StudyError(f"{path}: arm name '{name}' is used as a folder name: no spaces, '/' or '='")
    return arms


def grid_variants(grid: dict, path: Path) -> list[tuple[str, dict]]:
    """[(label, overrides)] for every combination of the grid's values; [("", {})] without a grid."""
    if not isinstance(grid, dict):
        raise StudyError(f"{path}: 'grid' maps recipe keys to lists of values (or to label: value mappings)")
    axes = []
    for key, values in grid.items():
        if isinstance(values, dict):
            axes.append([(str(label), {key: value}) for label, value in values.items()])
        elif isinstance(values, list) and values:
            axes.append([(f"{key}-{value}", {key: value}) for value in values])
        else:
            raise StudyError(f"{path}: grid '{key}' must be a non-empty list of values or a label: value mapping")
    return [
        ("_".join(label for label, _ in combo), {k: v for _, o in combo for k, v in o.items()})
        for combo in itertools.product(*axes)
    ]


def merge(base: dict, *layers: dict | None) -> dict:
    """Apply override layers in order; a None value removes the key. Per-job keys are dropped (set on the command
    line)."""
    recipe = dict(base)
    for layer in layers:
        for key, value in (layer or {}).items():
            if value is None:
                recipe.pop(key, None)
            else:
                recipe[key] = value
    for key in PER_JOB_KEYS:
        recipe.pop(key, None)
    return recipe


def check_model_keys(recipe: dict, arm: str, recipe_file: str, path: Path) -> None:
    """Catch the commonest study mistake before hours of jobs: an arm with both (or neither) model keys."""
    has_model, has_preset = recipe.get("model_name_or_path") is not None, recipe.get("scratch_preset") is not None
    if has_model and has_preset:
        raise StudyError(
            f"{path}: arm '{arm}' sets both model_name_or_path and scratch_preset ({recipe_file} + overrides); "
            "add 'model_name_or_path: null' to the arm's overrides to train from scratch"
        )
    if not has_model and not has_preset:
        raise StudyError(f"{path}: arm '{arm}' has neither model_name_or_path nor scratch_preset")


RESOURCE_KEYS = {"gpus", "cpus", "mem_gb", "time_min", "partition", "array_parallelism", "max_requeues", "slurm"}


def check_resources(resources: dict, path: Path) -> dict:
    if not isinstance(resources, dict):
        raise StudyError(f"{path}: 'resources' is a mapping (gpus, cpus, mem_gb, time_min, partition, ...)")
    check_keys(resources, RESOURCE_KEYS, f"{path}: resources")
    for key in ("gpus", "cpus", "mem_gb", "time_min", "array_parallelism", "max_requeues"):
        value = resources.get(key)
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0):
            raise StudyError(f"{path}: resources.{key} must be a non-negative number, got {value!r}")
    if not isinstance(resources.get("slurm") or {}, dict):
        raise StudyError(f"{path}: resources.slurm maps sbatch options to values, e.g. {{account: my-lab}}")
    return resources


# --------------------------------------------------------------------------------------------------------------
# The search section (search.py runs it)
# --------------------------------------------------------------------------------------------------------------


SEARCH_KEYS = {
    "arms",
    "n_trials",
    "objective",
    "direction",
    "seed",
    "overrides",
    "space",
    "storage",
    "heartbeat_s",
    "sampler_seed",
    "workers",
}
HOLDOUT_KEYS = ("heldout_train_samples", "heldout_from_file")


@dataclass
class SearchSpec:
    arms: list[str]
    n_trials: int
    objective: str
    direction: str
    seed: int
    overrides: dict[str, Any]
    space: dict[str, Any]
    storage: str
    heartbeat_s: int = 60
    sampler_seed: int | None = None
    workers: int = 1  # --backend slurm: worker jobs sharing the search (on one machine: one per GPU slot)
    folders: dict[str, Path] = field(default_factory=dict)  # arm -> <output_root>/search/<arm>

    def storage_exists(self) -> bool:
        """False only for a default SQLite file not created yet (reading must not create an empty search)."""
        return not self.storage.startswith("sqlite:///") or Path(self.storage.removeprefix("sqlite:///")).is_file()


def parse_search(spec: Any, study) -> SearchSpec:
    """Check the study's search section against its arms; the message names the file and the key."""
    where = f"{study.path}: search"
    if not isinstance(spec, dict):
        raise StudyError(f"{where} is a mapping (n_trials, objective, space, ...)")
    check_keys(spec, SEARCH_KEYS, where)
    for key in ("n_trials", "objective", "space"):
        if not spec.get(key):
            raise StudyError(f"{where}.{key} is required")
    names = [arm.name for arm in study.arms]
    arms = spec.get("arms") or names
    for arm in arms:
        if arm not in names:
            raise StudyError(f"{where}.arms: '{arm}' is not an arm; the arms are: {', '.join(names)}")
    if spec.get("direction", "maximize") not in ("maximize", "minimize"):
        raise StudyError(f"{where}.direction is maximize or minimize, got {spec['direction']!r}")
    if not isinstance(spec["space"], dict):
        raise StudyError(f"{where}.space maps recipe keys to {{low, high[, log, step]}} or to a list of values")
    for key, dimension in spec["space"].items():
        check_dimension(key, dimension, f"{where}.space.{key}")
    overrides = spec.get("overrides") or {}
    for arm in study.arms:
        if arm.name in arms and not any({**arm.recipe, **overrides}.get(k) is not None for k in HOLDOUT_KEYS):
            raise StudyError(
                f"{where}: arm '{arm.name}' would measure '{spec['objective']}' on dev. The objective must "
                "come from a slice of TRAIN: set heldout_train_samples (MNLI) or heldout_from_file (QA) "
                "in search.overrides"
            )
    search_root = study.output_root / "search"
    return SearchSpec(
        arms=list(arms),
        n_trials=int(spec["n_trials"]),
        objective=str(spec["objective"]),
        direction=spec.get("direction", "maximize"),
        seed=int(spec.get("seed", 42)),
        overrides=overrides,
        space=spec["space"],
        storage=spec.get("storage") or f"sqlite:///{search_root / 'search.db'}",
        heartbeat_s=int(spec.get("heartbeat_s", 60)),
        sampler_seed=spec.get("sampler_seed"),
        workers=int(spec.get("workers", 1)),
        folders={arm: search_root / arm for arm in arms},
    )


def check_dimension(key: str, dimension: Any, where: str) -> None:
    if isinstance(dimension, list) and dimension:
        return
    if (
        not isinstance(dimension, dict)
        or not {"low", "high"} <= set(dimension)
        or set(dimension) - {"low", "high", "log", "step"}
    ):
        raise StudyError(
            f"{where}: a range {{low, high[, log, step]}} or a non-empty list of values, got {dimension!r}"
        )
    if (
        not all(isinstance(dimension[k], (int, float)) for k in ("low", "high"))
        or dimension["low"] >= dimension["high"]
    ):
        raise StudyError(f"{where}: low and high are numbers with low < high, got {dimension!r}")


def best_file(spec: SearchSpec, arm: str) -> Path:
    return spec.folders[arm] / "best.yaml"


def apply_best_values(study) -> None:
    """Merge each searched arm's best.yaml (when its search is done) into the arm's recipe."""
    for arm in study.arms:
        if arm.name in study.search.arms and best_file(study.search, arm.name).is_file():
            best = yaml.safe_load(best_file(study.search, arm.name).read_text(encoding="utf-8"))
            arm.recipe.update(best["params"])
            arm.recipe_source += f" + {best_file(study.search, arm.name)}"
