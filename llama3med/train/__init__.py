"""Two-stage training of Llama3-Med: stage 1 (`align`) trains the connector on image–caption pairs,
stage 2 (`instruct`) trains the LLM (full or LoRA/QLoRA) and the connector on conversations; the vision
tower is always frozen. Built on the Hugging Face `Trainer`, so `accelerate launch`, `torchrun`,
`deepspeed` (ZeRO-2/3), FSDP, bf16, gradient checkpointing and accumulation work unchanged.

Entry points: `llama3med train RECIPE [key=value ...] [--resume] [--strict]` and
`llama3med merge ADAPTER_DIR OUT_DIR`; in Python, `llama3med.train.run.train(recipe)`.
"""
