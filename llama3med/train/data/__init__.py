"""Training data: conversation readers and data mixtures (`conversations`), label masking (`supervision`) and
the dataset with its collator (`dataset`)."""
