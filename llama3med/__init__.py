"""llama3med — Llama3-Med high-resolution biomedical vision-language models.

`import llama3med` is cheap: it imports neither torch nor transformers, so the `llama3med` command starts
quickly. The model is registered with transformers' Auto classes when a model is first loaded through this
package and on `import llama3med.model`; after that `AutoModelForImageTextToText.from_pretrained(folder)` and
`AutoProcessor.from_pretrained(folder)` load a saved Llama3-Med folder without `trust_remote_code` and without
network access.
"""

__version__ = "0.1.0"
