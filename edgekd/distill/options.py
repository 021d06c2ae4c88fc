"""The options of `edgekd distill`, each declared once.

OPTIONS: one record per option (name, kind, default, help, choices, smallest value). DistillConfig's fields and
defaults are made from it here, the click command's options in edgekd/cli/distill.py; choices come from the
registries that implement them (FUSIONS, the teacher STRATEGIES, LOSSES, SCHEDULES, CLASSICAL_TEACHERS, the split
METHODS). CONSTRAINTS: every rule on the values, alone and between options, as (rule, message); DistillConfig.check
applies it to the command line, a --config FILE.toml and the Python API alike.

No TensorFlow here or in what this imports: a bad option fails within a second, before TensorFlow loads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, make_dataclass

from edgekd.data.splits import METHODS as SPLIT_METHODS
from edgekd.distill.fusion import FUSIONS
from edgekd.distill.teachers import STRATEGIES
from edgekd.errors import UserError
from edgekd.models.classical import CLASSICAL_TEACHERS

# The KD terms and learning-rate schedules by name, with what each does (the help lists them): distill/losses.py
# and distill/train.py implement them, but import TensorFlow, which a bad option must not wait for.
LOSSES = {
    "kl": "KL on T-softened distributions",
    "mse": "MSE between student and teacher logits",
    "hint": "KL plus feature hints (student penultimate features projected to each teacher's, 1 - cosine)",
}
SCHEDULES = {"constant": "constant", "cosine": "cosine decay to 0 over --epochs"}


def either(descriptions) -> str:
    """'a, b, or c'."""
    *rest, last = descriptions
    return f"{', '.join(rest)}, or {last}" if rest else last


@dataclass(frozen=True)
class Option:
    """One option: a DistillConfig field and, as --name-with-dashes, an option of `edgekd distill`."""

    name: str
    kind: str  # int, float, str, names (a comma-separated list), flag, batch (N or auto), path
    default: object = None  # None: unset (the help says what that means); REQUIRED: no default
    help: str | None = None
    choices: tuple[str, ...] | None = None  # the names of a registry
    at_least: int | None = None  # int: the smallest value
    above: float | None = None  # float: the value must be larger than this

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def annotation(self) -> str:
        base = {"names": "list[str]", "flag": "bool", "batch": "int", "path": "str"}.get(self.kind, self.kind)
        return f"{base} | None" if self.default is None else base


REQUIRED = object()
OPTIONS = (
    Option("out", "path", REQUIRED, "Run folder to create."),
    Option("teachers", "int", 3, "Teachers in the ensemble.", at_least=1),
    Option("teacher", "str", "conv-teacher", "Teacher architecture: preset name or .toml path."),
    Option("student", "str", "edge-conv", "Student architecture: preset name or .toml path."),
    Option("epochs", "int", 60, "Most epochs per model (early stopping on validation).", at_least=1),
    Option("patience", "int", 12, "Epochs without validation gain before stopping.", at_least=1),
    # None: auto_batch_size of the training windows (distill/stages.py)
    Option(
        "batch_size",
        "batch",
        None,
        "Windows per training step; auto: at least 64 steps per epoch, 32 to 256 windows.",
        at_least=1,
    ),
    Option("learning_rate", "float", 2e-3, "Adam's learning rate (the start of --lr-schedule cosine).", above=0),
    Option(
        "lr_schedule",
        "str",
        "constant",
        f"Learning rate of every model trained: {either(SCHEDULES.values())}.",
        choices=tuple(SCHEDULES),
    ),
    Option("window", "float", 0.5, "Window length in seconds."),
    Option("hop", "float", 0.1, "Hop between windows in seconds."),
    Option(
        "rate",
        "float",
        None,
        "Model sample rate in Hz, every stream resampled to it. [default: the highest stream rate]",
    ),
    Option(
        "split",
        "str",
        None,
        "Hold out subjects, repetitions, sessions, or a stratified random part. [default: the first of subject, "
        "repetition, session with 3+ values, else random]",
        choices=tuple(SPLIT_METHODS),
    ),
    Option(
        "test_on", "names", (), "Subjects, repetitions or sessions to test on, comma-separated. [default: the last]"
    ),
    Option(
        "val_on",
        "names",
        (),
        "Subjects, repetitions or sessions to validate on, comma-separated. "
        "[default: the ones before the test group, 15% of all, at least one]",
    ),
    Option("temperature", "float", 4.0, "KD temperature T."),
    Option("alpha", "float", 0.3, "Weight of cross-entropy; 1 - alpha weighs the KD term."),
    Option(
        "fusion",
        "str",
        "mean",
        "How teachers become one target: mean, weighted by val accuracy, per-window confidence, majority vote, "
        "mean of per-teacher losses, or one student head per teacher (folded into one head for export).",
        choices=tuple(FUSIONS),
    ),
    Option("loss", "str", "kl", f"KD term: {either(LOSSES.values())}.", choices=tuple(LOSSES)),
    Option("hint_weight", "float", 1.0, "--loss hint: weight of the feature term beside KL."),
    Option(
        "seed", "int", 0, "Seed of a random split, the teachers and the students: the same seed gives the same run."
    ),
    Option(
        "teachers_from",
        "str",
        "bootstrap",
        "Teacher diversity: bootstrap resamples, seeds only, random subsets, snapshots of one cyclic-LR run, or one "
        "expert per stream (modalities; ignores --teachers).",
        choices=tuple(STRATEGIES),
    ),
    Option(
        "subset_min",
        "float",
        0.6,
        "--teachers-from subsets: each teacher's fraction of the training windows is drawn from [this, 1].",
    ),
    Option(
        "repeats",
        "int",
        1,
        "Train the students with this many seeds (seed, seed+1, ...) and report mean and std; the first seed's are "
        "saved.",
        at_least=1,
    ),
    Option(
        "students",
        "names",
        (),
        "Several student architectures, comma-separated (replaces --student): each distils from the same targets; "
        "the first is the run's student.",
    ),
    Option(
        "selector",
        "flag",
        False,
        "With --students: train a selector that routes each window to the student it expects to be right; export "
        "then writes the whole system.",
    ),
    Option(
        "augment_gain",
        "float",
        0.0,
        "Students (teachers too with --augment-teachers): random gain per training window and channel, "
        "exp(N(0, G^2)); 0 is off. The teachers then score the augmented windows in each training step.",
    ),
    Option(
        "augment_noise",
        "float",
        0.0,
        "Students (teachers too with --augment-teachers): sd of Gaussian noise added to the z-scored training "
        "windows; 0 is off.",
    ),
    Option(
        "augment_teachers",
        "flag",
        False,
        "Train the teachers on the augmented windows too (needs --augment-gain or --augment-noise).",
    ),
    Option(
        "mixup",
        "float",
        0.0,
        "Mix each training window with another of its batch, share ~ Beta(A, A), labels and targets alike; 0 is off.",
    ),
    Option(
        "classical_teacher",
        "str",
        "none",
        "Add the LDA on time-domain features (the classical baseline) to the teachers the KD targets are fused from; "
        "--loss kl, students on clean windows.",
        choices=tuple(CLASSICAL_TEACHERS),
    ),
)
OPTION = {o.name: o for o in OPTIONS}


@dataclass(frozen=True)
class Constraint:
    holds: Callable[[object], bool]  # DistillConfig -> whether its values obey the rule
    message: Callable[[object], str]  # DistillConfig -> what is wrong and what to do


def at_least(name: str, also: str = "") -> Constraint:
    """The option's `at_least` (the click command shows it as a range); None passes (batch size auto)."""
    minimum = OPTION[name].at_least
    return Constraint(
        lambda c: getattr(c, name) is None or getattr(c, name) >= minimum,
        lambda c: f"{OPTION[name].flag} must be at least {minimum}{also}",
    )


def above(name: str) -> Constraint:
    bound = OPTION[name].above
    return Constraint(lambda c: getattr(c, name) > bound, lambda c: f"{OPTION[name].flag} must be more than {bound:g}")


def one_of(name: str) -> Constraint:
    """The option's choices, from its registry."""
    choices = OPTION[name].choices
    return Constraint(
        lambda c: getattr(c, name) in choices,
        lambda c: f"{OPTION[name].flag} must be one of {', '.join(choices)}, not {getattr(c, name)!r}",
    )


def within(name: str, low: float, high: float, meaning: str, example: str) -> Constraint:
    """low <= value <= high, with what the value means and an example."""
    return Constraint(
        lambda c: low <= getattr(c, name) <= high,
        lambda c: (
            f"{OPTION[name].flag} {meaning} and must lie in [{low:g}, {high:g}], not {getattr(c, name):g}; "
            f"e.g. {example}"
        ),
    )


CONSTRAINTS = (
    at_least("teachers"),
    at_least("epochs"),
    at_least("patience"),
    at_least("batch_size", ", or auto"),
    above("learning_rate"),
    one_of("lr_schedule"),
    Constraint(lambda c: c.temperature > 0, lambda c: "--temperature must be positive, e.g. 4"),
    Constraint(
        lambda c: 0.0 <= c.alpha <= 1.0,
        lambda c: "--alpha weighs cross-entropy against the KD term and must lie in [0, 1], e.g. 0.3",
    ),
    one_of("fusion"),
    one_of("loss"),
    Constraint(lambda c: c.hint_weight >= 0, lambda c: f"--hint-weight must be zero or more, not {c.hint_weight:g}"),
    Constraint(
        lambda c: not (c.loss == "hint" and c.fusion == "multi-head"),
        lambda c: "--loss hint and --fusion multi-head each add their own outputs to the student; use one of them",
    ),
    one_of("teachers_from"),
    Constraint(
        lambda c: 0.0 < c.subset_min <= 1.0,
        lambda c: (
            "--subset-min is the smallest fraction of the training windows a teacher sees and must lie in "
            f"(0, 1], not {c.subset_min:g}"
        ),
    ),
    at_least("repeats"),
    within("augment_gain", 0.0, 5.0, "is a standard deviation in z-scored units", "0.3"),
    within("augment_noise", 0.0, 5.0, "is a standard deviation in z-scored units", "0.3"),
    Constraint(
        lambda c: not c.augment_teachers or c.augment_gain > 0 or c.augment_noise > 0,
        lambda c: (
            "--augment-teachers augments with --augment-gain and --augment-noise, both 0 here; give one, "
            "e.g. --augment-gain 0.3"
        ),
    ),
    within("mixup", 0.0, 10.0, "is the Beta(a, a) parameter of the mixing share", "0.4"),
    one_of("classical_teacher"),
    Constraint(
        lambda c: c.classical_teacher == "none" or c.loss == "kl",
        lambda c: (
            f"--classical-teacher {c.classical_teacher} gives probabilities from features computed outside "
            f"the network, so it works with --loss kl (here --loss {c.loss})"
        ),
    ),
    Constraint(
        lambda c: not c.selector or len(c.students) >= 2,
        lambda c: (
            "--selector routes windows between students and needs at least two in --students "
            f"(got {len(c.students)}), e.g. --students edge-student,isl-student"
        ),
    ),
    Constraint(
        lambda c: len(set(c.students)) == len(c.students),
        lambda c: f"--students lists an architecture twice ({', '.join(c.students)}); list each once",
    ),
    Constraint(
        lambda c: not (c.loss == "mse" and c.fusion == "vote"),
        lambda c: (
            "--fusion vote gives one-hot targets with no logits for --loss mse to match; use --loss kl or "
            "another --fusion"
        ),
    ),
)


def check(cfg) -> None:
    """The first constraint the config breaks, as a UserError that says what to do."""
    for constraint in CONSTRAINTS:
        if not constraint.holds(cfg):
            raise UserError(constraint.message(cfg))


def _field(option: Option):
    if option.default is REQUIRED:
        return field()
    if option.kind == "names":
        return field(default_factory=list)
    return field(default=option.default)


# What `distill()` runs: the dataset, every option, and how much it prints (the command's --quiet).
DistillConfig = make_dataclass(
    "DistillConfig",
    [
        ("dataset", "str"),
        *[(o.name, o.annotation, _field(o)) for o in OPTIONS],
        ("verbose", "int", field(default=1)),
    ],
    namespace={"check": check, "__module__": __name__},
)
