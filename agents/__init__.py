"""Agents: each a short composition of mtrl parts. Importing this package registers them."""

from mtrl.agents import brc, care, mhsac, moore, mtsac, paco, softmod, softshare  # noqa: F401  (registration side effects)
