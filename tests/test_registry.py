"""Suites from other installed packages arrive through the ``mtrl.envs`` entry point group."""

import sys
import textwrap

from mtrl import registry


def test_entry_point_suite_is_registered(tmp_path, monkeypatch):
    pkg = tmp_path / "site"
    (pkg / "my_suite").mkdir(parents=True)
    (pkg / "my_suite" / "__init__.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass
        from envs.toy import ToyConfig, ToySuite

        @dataclass
        class LineConfig(ToyConfig):
            suite: str = "line"
            num_tasks: int = 2

        class LineSuite(ToySuite):
            """A plugged-in suite."""
            Config = LineConfig
    '''))
    dist = pkg / "my_suite-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-suite\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mtrl.envs]\nline = my_suite:LineSuite\n")
    monkeypatch.syspath_prepend(str(pkg))
    monkeypatch.setattr(registry, "_loaded", False)
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

    pkg = tmp_path / "site"
    (pkg / "good_suite").mkdir(parents=True)
    (pkg / "good_suite" / "__init__.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass
        from envs.toy import ToyConfig, ToySuite

        @dataclass
        class DotConfig(ToyConfig):
            suite: str = "dot"

        class DotSuite(ToySuite):
            """A working plug-in."""
            Config = DotConfig
    '''))
    (pkg / "crashing_suite.py").write_text("raise RuntimeError('needs a licence server')\n")
    dist = pkg / "plugins-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: plugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[mtrl.envs]\nmissing = no_such_module:Suite\ncrashing = crashing_suite:Suite\ndot = good_suite:DotSuite\n")
    monkeypatch.syspath_prepend(str(pkg))
    monkeypatch.setattr(registry, "_loaded", False)
    try:
        assert registry.get("suite", "dot").target.__name__ == "DotSuite"
        assert registry.get("suite", "toy")
        broken = registry.broken()
        assert "No module named 'no_such_module'" in broken["missing"] and "needs a licence server" in broken["crashing"]
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
