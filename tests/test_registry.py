"""Suites from other installed packages arrive through the ``mtrl.envs`` entry point group."""

import sys
import textwrap

from mtrl import registry


def test_entry_point_suite_is_registered(tmp_path, monkeypatch):
    pkg = tmp_path / "site"
    (pkg / "my_suite").mkdir(parents=True)
    (pkg / "my_suite" / "__init__.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass
        from mtrl.envs.toy import ToyConfig, ToySuite

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
