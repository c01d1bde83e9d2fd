"""Logging for every layer: the stage, date and run id on each line, and no secret in any of it."""
