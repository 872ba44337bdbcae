"""Runs as files (no Ray): the run spec, storage, reading runs back, in-process runs."""
