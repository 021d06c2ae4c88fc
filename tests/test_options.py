"""distill's options are declared once (distill/options.py): the click command, DistillConfig and the constraints all
come from that one table, and the command line, a config file and the Python API meet the same rules."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import MISSING, fields

import pytest
from click.testing import CliRunner

from edgekd.distill.fusion import FUSIONS
from edgekd.distill.options import CONSTRAINTS, LOSSES, OPTIONS, SCHEDULES, DistillConfig
from edgekd.distill.teachers import STRATEGIES
from edgekd.errors import UserError


def test_the_command_and_the_config_have_the_options_of_the_table_with_its_defaults():
    from edgekd.cli.distill import distill

    params = {p.name: p for p in distill.params}
    defaults = {f.name: f.default for f in fields(DistillConfig)}
    for option in OPTIONS:
        param = params[option.name]
        assert param.opts == [option.flag]
        if option.kind in ("int", "float", "str") and option.default is not None:  # unset: the help says what
            assert param.default == option.default == defaults[option.name], option.name
    assert [f.name for f in fields(DistillConfig)] == ["dataset", *(o.name for o in OPTIONS), "verbose"]
    assert defaults["test_on"] is MISSING and DistillConfig(dataset="d", out="o").test_on == []


def test_choices_come_from_the_registries():
    from edgekd.cli.distill import distill

    choices = {p.name: list(p.type.choices) for p in distill.params if hasattr(p.type, "choices")}
    assert choices["fusion"] == list(FUSIONS) and choices["teachers_from"] == list(STRATEGIES)
    assert choices["loss"] == list(LOSSES) and choices["lr_schedule"] == list(SCHEDULES)


def test_every_constraint_message_names_its_option():
    for constraint in CONSTRAINTS:
        config = DistillConfig(dataset="d", out="o")
        assert constraint.holds(config)  # the defaults obey every rule
        assert "--" in constraint.message(config)


@pytest.mark.parametrize(
    "options, key, value, says",
    [
        ({"fusion": "vote", "loss": "mse"}, "loss", '"mse"', "--fusion vote"),
        ({"alpha": 1.5}, "alpha", "1.5", "--alpha"),
        ({"augment_teachers": True}, "augment-teachers", "true", "--augment-teachers"),
    ],
)
def test_the_api_the_command_line_and_a_config_file_meet_the_same_rule(myo5, tmp_path, options, key, value, says):
    from edgekd.cli import main

    with pytest.raises(UserError, match=says.replace("-", "\\-")):
        DistillConfig(dataset=str(myo5), out=str(tmp_path / "api"), **options).check()
    flags = [
        part
        for name, v in options.items()
        for part in (["--" + name.replace("_", "-")] if v is True else ["--" + name.replace("_", "-"), str(v)])
    ]
    typed = CliRunner().invoke(main, ["distill", str(myo5), "--out", str(tmp_path / "cli"), *flags])
    assert typed.exit_code == 2 and says in typed.output
    config = tmp_path / "bad.toml"
    others = {k: v for k, v in options.items() if k.replace("_", "-") != key}
    config.write_text(
        "".join(f'{k.replace("_", "-")} = "{v}"\n' for k, v in others.items()) + f"{key} = {value}\n", encoding="utf-8"
    )
    filed = CliRunner().invoke(main, ["distill", str(myo5), "--out", str(tmp_path / "toml"), "--config", str(config)])
    assert filed.exit_code == 2 and says in filed.output
    assert not any((tmp_path / d).exists() for d in ("api", "cli", "toml"))


def test_a_bad_option_fails_before_tensorflow_loads(myo5, tmp_path):
    code = (
        "import sys\n"
        "from edgekd.cli import main\n"
        f"try: main(['distill', {str(myo5)!r}, '--out', {str(tmp_path / 'r')!r}, '--loss', 'hint', "
        "'--fusion', 'multi-head'])\n"
        "except SystemExit as e: assert e.code == 2, e.code\n"
        "bad = [m for m in ('tensorflow', 'tf_keras') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "--loss hint and --fusion multi-head" in proc.stderr + proc.stdout


def test_every_declared_loss_and_schedule_is_one_the_training_code_implements():
    """options.py names them without importing TensorFlow; the names must not drift from the implementations."""
    from edgekd.distill.losses import KD_TERMS
    from edgekd.distill.options import LOSSES, SCHEDULES
    from edgekd.distill.train import learning_rate_schedule

    assert set(LOSSES) == {*KD_TERMS, "hint"}  # hint: the KL term plus feature hints
    for schedule in SCHEDULES:
        assert learning_rate_schedule(schedule, 1e-3, epochs=2, steps_per_epoch=5) is not None
