"""Environment suites. Importing this package registers the built-in ones."""

from mtrl.envs import meta_world, toy  # noqa: F401  (registration side effects)
