"""Tests of `llama3med.instruct`: a package, so that its module names (test_progress, ...) may repeat elsewhere."""
