"""The Llama3-Med model: frozen vision tower, hierarchical multi-scale encoding, connector, causal LLM."""
