"""Suites from other installed packages arrive through the ``mtrl.envs`` entry point group."""

import sys
import textwrap

from mtrl import registry


def install_plugins(tmp_path, monkeypatch, modules: dict[str, str], entry_points: str, name: str = "my-suite") -> None:
    """An installed distribution (on sys.path, with its dist-info) holding ``modules``
    (path -> source) and declaring ``entry_points`` in the mtrl.envs group."""
    pkg = tmp_path / "site"
    for path, source in modules.items():
        (pkg / path).parent.mkdir(parents=True, exist_ok=True)
        (pkg / path).write_text(textwrap.dedent(source))
    dist = pkg / f"{name.replace('-', '_')}-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[mtrl.envs]\n{entry_points}")
    monkeypatch.syspath_prepend(str(pkg))
    monkeypatch.setattr(registry, "_loaded", False)


def test_entry_point_suite_is_registered(tmp_path, monkeypatch):
    install_plugins(
        tmp_path,
        monkeypatch,
        {
            "my_suite/__init__.py": '''
        from dataclasses import dataclass
        from mtrl.envs.toy import ToyConfig, ToySuite

        @dataclass
        class LineConfig(ToyConfig):
            suite: str = "line"
            num_tasks: int = 2

        class LineSuite(ToySuite):
            """A plugged-in suite."""
            Config = LineConfig
    '''
        },
        "line = my_suite:LineSuite\n",
    )
    entry = registry.get("suite", "line")
    assert entry.target.__name__ == "LineSuite" and entry.config_cls.__name__ == "LineConfig"
    assert "line" in [e.name for e in registry.names("suite")]
    from mtrl.config import from_dict

    cfg = from_dict({"env": {"suite": "line", "num_tasks": 2}})
    suite = entry.target(cfg.env)
    assert suite.task_names == ["reach-east", "reach-north"]
    sys.modules.pop("my_suite", None)


def test_builtin_components_are_listed():
    assert {e.name for e in registry.names("suite")} >= {"toy", "metaworld"}
    assert {e.name for e in registry.names("agent")} >= {"mtsac", "mhsac"}


def test_a_plugin_that_fails_to_import_breaks_only_itself(tmp_path, monkeypatch, capsys):
    """A suite plug-in whose entry point raises on import: the other suites (built-in and
    plugged-in) still work, ``mtrl list`` shows it with its error, using it is one line."""
    from mtrl.cli import main
    from mtrl.errors import ConfigError

    install_plugins(
        tmp_path,
        monkeypatch,
        {
            "good_suite/__init__.py": '''
        from dataclasses import dataclass
        from envs.toy import ToyConfig, ToySuite

        @dataclass
        class DotConfig(ToyConfig):
            suite: str = "dot"

        class DotSuite(ToySuite):
            """A working plug-in."""
            Config = DotConfig
    ''',
            "crashing_suite.py": "raise RuntimeError('needs a licence server')\n",
        },
        "missing = no_such_module:Suite\ncrashing = crashing_suite:Suite\ndot = good_suite:DotSuite\n",
        name="plugins",
    )
    try:
        assert registry.get("suite", "dot").target.__name__ == "DotSuite"
        assert registry.get("suite", "toy")
        broken = registry.broken()
        assert (
            "No module named 'no_such_module'" in broken["missing"] and "needs a licence server" in broken["crashing"]
        )
        for name, why in (("missing", "no_such_module"), ("crashing", "RuntimeError: needs a licence server")):
            try:
                registry.get("suite", name)
                raise AssertionError("a broken suite was returned")
            except ConfigError as e:
                assert why in str(e) and "\n" not in str(e)
        assert main(["list"]) == 0
        listed = capsys.readouterr().out
        assert all(name in listed for name in ("missing", "crashing", "dot", "toy")) and "broken" in listed
        assert main(["train", "toy-mtsac", "env.suite=crashing", f"run.dir={tmp_path / 'run'}"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "suite 'crashing' is installed but its entry point" in err[0]
        assert not (tmp_path / "run").exists()
    finally:
        sys.modules.pop("good_suite", None)
        registry._REGISTRY["suite"].pop("dot", None)
        registry._BROKEN.clear()
        monkeypatch.setattr(registry, "_loaded", False)
