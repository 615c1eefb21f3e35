"""Command-line interface: `llama3med --help` lists every command."""
