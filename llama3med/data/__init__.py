"""Data: training conversations (readers, the dataset, label masking) and the synthetic fine-detail probe."""
