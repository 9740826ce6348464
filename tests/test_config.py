import pytest

from mtrl.config import ConfigError, find_config, from_dict, load_config, parse_overrides


def test_overrides_are_typed_and_nested():
    cfg = load_config(
        "toy-mtsac",
        ["train.total_steps=2e4", "seed=3", "device=cpu", "agent.hidden_sizes=[32,32]", "sac.max_grad_norm=null"],
    )
    assert cfg.train.total_steps == 20000 and isinstance(cfg.train.total_steps, int)
    assert cfg.seed == 3 and cfg.device == "cpu"
    assert cfg.agent.hidden_sizes == [32, 32]
    assert cfg.sac.max_grad_norm is None
    assert cfg.run.name == "toy-mtsac"


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.total_step=5", "unknown config key 'train.total_step'; closest valid keys: 'train.total_steps'"),
        ("agent.hiden_sizes=[3]", "'agent.hidden_sizes'"),
        ("train.total_steps=abc", "'train.total_steps' must be of type int"),
        ("train.progress=3", "'train.progress' must be of type bool"),
        ("agent.name=mtsca", "'agent.name': unknown agent 'mtsca' (did you mean 'mtsac'"),
        ("env.suite=tyo", "unknown suite 'tyo'"),
        ("device=gpu", "device must be one of auto, cpu, cuda"),
        ("seed", "not of the form dotted.key=value"),
    ],
)
def test_bad_input_fails_with_one_line_naming_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_config("toy-mtsac", [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_changing_the_agent_restarts_its_section_at_that_agents_defaults():
    cfg = load_config("toy-mtsac", ["agent.name=mhsac"])
    assert cfg.agent.name == "mhsac" and cfg.agent.hidden_sizes == [400, 400, 400]


def test_every_shipped_config_loads():
    from mtrl.config import available_configs

    names = available_configs()
    assert {"quickstart", "toy-mtsac", "mt10-mtsac", "mt10-mhsac", "mt50-mtsac"} <= set(names)
    for name in names:
        load_config(name)


def test_unknown_config_name_and_missing_file():
    with pytest.raises(ConfigError, match="unknown config 'mt10-mtsca'.*did you mean 'mt10-mtsac'"):
        find_config("mt10-mtsca")
    with pytest.raises(ConfigError, match="does not exist"):
        find_config("nowhere/x.yaml")


def test_parse_overrides_keeps_strings():
    assert parse_overrides(["run.dir=runs/x", "a.b.c=1"]) == {"run": {"dir": "runs/x"}, "a": {"b": {"c": 1}}}


def test_from_dict_defaults():
    cfg = from_dict({})
    assert cfg.env.suite == "toy" and cfg.agent.name == "mtsac" and cfg.scheduler.name == "round_robin"


def test_range_checks_apply_to_saved_configs_too():
    with pytest.raises(ConfigError) as err:
        from_dict({"train": {"total_steps": -5}})  # what `mtrl eval` does with a run's config.yaml
    assert str(err.value) == "train.total_steps must be at least 1, got -5"
    with pytest.raises(ConfigError, match=r"^env.num_tasks must be at least 1, got 0$"):
        from_dict({"env": {"suite": "toy", "num_tasks": 0}})  # a component's validate(), at load


def test_categorical_support_must_hold_the_scaled_returns():
    with pytest.raises(ConfigError, match=r"^agent.v_max=5 is below sac.reward_scale_bound=10: .*set agent.v_max=10"):
        load_config("toy-brc", ["agent.v_max=5"])
    assert load_config("toy-brc", ["agent.v_max=20"]).agent.v_max == 20  # a wider support only coarsens it
    assert (
        load_config("toy-brc", ["agent.v_max=5", "sac.reward_scaling=none"]).agent.v_max == 5
    )  # raw rewards: the user's call


def test_zero_turns_periodic_work_off_and_is_accepted():
    cfg = load_config(
        "toy-mtsac",
        [
            "train.eval_every=0",
            "train.log_every=0",
            "train.checkpoint_every=0",
            "train.warmup_steps=0",
            "conflict.monitor_every=0",
            "sac.max_grad_norm=null",
            "sac.encoder_tau=null",
            "sac.gamma=1",
            "sac.tau=1",
            "env.start_noise=0",
        ],
    )
    assert (cfg.train.eval_every, cfg.train.log_every, cfg.train.checkpoint_every) == (0, 0, 0)


def test_malformed_yaml_names_the_file_and_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("env:\n  suite: toy\n\tnum_tasks: 4\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    message = str(err.value)
    assert message.startswith(f"config '{path}' is not valid YAML at line 3, column 1:") and "tabs" in message
    assert "\n" not in message


def test_every_config_field_is_documented_where_declared():
    """Every field of the core sections and of every registered suite, agent and scheduler
    config has a doc (the string after its declaration) for `mtrl train --show-config`."""
    import dataclasses

    from mtrl import config, registry

    registry.get("agent", "mtsac")  # loads the built-in components
    components = [e.config_cls for kind in registry.KINDS for e in registry._REGISTRY[kind].values()]
    classes = [
        config.Config,
        config.RunConfig,
        config.SACConfig,
        config.TrainConfig,
        config.ConflictConfig,
        config.DistillConfig,
    ] + [c for c in components if c.__module__.startswith("mtrl.")]  # no tests' plug-ins
    missing = [
        f"{cls.__name__}.{f.name}"
        for cls in classes
        for f in dataclasses.fields(cls)
        if not config.field_docs(cls).get(f.name)
    ]
    assert missing == []


def test_a_config_without_docs_or_source_still_renders():
    """A plug-in's config need not document its fields, nor ship its source."""
    import dataclasses

    import yaml

    from mtrl.config import documented_yaml, field_docs

    namespace: dict = {}
    exec("import dataclasses\n@dataclasses.dataclass\nclass Plain:\n    x: int = 1\n    y: list = None\n", namespace)
    plain = namespace["Plain"](y=[1, 2])
    assert field_docs(type(plain)) == {}
    assert yaml.safe_load(documented_yaml(plain)) == dataclasses.asdict(plain)


def test_reading_a_config_imports_no_algorithm_code():
    """mtrl/config.py holds every section (ConflictConfig too) and the values they accept;
    the components' configs come through the registry when a config is loaded."""
    import subprocess
    import sys

    code = "import sys, mtrl.config; print(sorted(m for m in sys.modules if m.startswith(('mtrl', 'torch'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['mtrl', 'mtrl.config', 'mtrl.errors', 'mtrl.registry']"
