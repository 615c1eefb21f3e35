"""Serving Llama3-Med: an OpenAI-compatible HTTP server with dynamic batching, a Gradio web UI and the
conversation state shared by `llama3med chat` and the web UI. Everything answers through `llama3med.api`."""
