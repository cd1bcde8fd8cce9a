"""Example pipelines: how developers add their own (CONVEYOR_PIPELINES=examples.word_count)."""
