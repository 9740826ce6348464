"""``mtrl sweep``: trials on Ray, their storage, and cleaning up after a killed driver."""
