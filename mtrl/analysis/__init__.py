"""Reading runs: ``mtrl report`` (IQM, CIs, P(>)), transfer maps and representation introspection."""
