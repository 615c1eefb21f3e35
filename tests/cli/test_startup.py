"""Start-up cost: `import llama3med` and the CLI's help screens import neither torch nor transformers;
the Auto classes are registered on `import llama3med.model`."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "transformers")


def heavy_modules_after(code: str) -> dict[str, bool]:
    """Run `code` in a fresh interpreter; which of torch / transformers ended up imported."""
    script = f"{code}\nimport json, sys\nprint(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_llama3med_leaves_torch_and_transformers_out() -> None:
    assert heavy_modules_after("import llama3med") == {"torch": False, "transformers": False}


def test_help_screens_import_neither_torch_nor_transformers() -> None:
    code = (
        "from typer.testing import CliRunner\n"
        "from llama3med.cli.main import app\n"
        "for args in (['--help'], ['score', '--help'], ['eval', '--help'], ['train', '--help'], ['ask', '--help']):\n"
        "    result = CliRunner().invoke(app, args)\n"
        "    assert result.exit_code == 0 and 'Usage' in result.output, (args, result.output)\n"
    )
    assert heavy_modules_after(code) == {"torch": False, "transformers": False}


def test_import_llama3med_model_registers_the_auto_classes() -> None:
    code = (
        "import llama3med.model\n"
        "from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor\n"
        "from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING\n"
        "config = AutoConfig.for_model('llama3med')\n"
        "assert MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING[type(config)].__name__ == 'Llama3MedForConditionalGeneration'\n"
    )
    assert heavy_modules_after(code) == {"torch": True, "transformers": True}
