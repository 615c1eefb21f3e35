"""The Llama3-Med model: frozen vision tower, hierarchical multi-scale encoding, connector, causal LLM.

Importing this package registers the model with transformers' Auto classes (see `llama3med.model.registration`),
so `import llama3med.model` is all a script needs before `AutoModelForImageTextToText.from_pretrained(folder)`.
"""

from llama3med.model.registration import register_auto_classes

register_auto_classes()
