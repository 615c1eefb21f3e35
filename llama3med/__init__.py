"""llama3med — Llama3-Med high-resolution biomedical vision-language models.

Importing the package registers the model with transformers' Auto classes, so that
`AutoModelForImageTextToText.from_pretrained(folder)` and `AutoProcessor.from_pretrained(folder)`
load a saved Llama3-Med folder without `trust_remote_code` and without network access.
"""

from llama3med._registration import register_auto_classes

register_auto_classes()

__version__ = "0.1.0"
