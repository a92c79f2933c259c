"""Test-support helpers: fixture projects, a local index, clean envs, hook logs."""
