"""Agents: each a short composition of mtrl parts. Importing this package registers them."""

from agents import care, mhsac, mtsac  # noqa: F401  (registration side effects)
