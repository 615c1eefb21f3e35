"""The docs-commands check: every shell command in README.md and docs/*.md is either run here, as written, from a
temporary working directory (never the repository root), or listed in `NOT_RUN` with the reason it cannot run
on a CPU-only, offline machine.

`RUN_BY` maps each runnable command to the scenario (a test below) that runs it, in a folder holding what the
docs say the reader has: `LLAMA3MED_DATA_ROOT` pointing at the shared benchmarks, the image files the commands
name (`chest.png` is a real 1024 x 1291 VQA-RAD radiograph, 533 KiB as PNG; the DICOM and NIfTI files are
written by `tests/medical_files.py`), and the model folders earlier documented commands build. Where a
command names the output of a run this check cannot afford (`outputs/demo/model`, the demo's trained model;
`outputs/my-model`), the scenario says which folder stands in for it. A new or changed command fails
`test_every_documented_command_is_classified` until it is added to one of the two tables.

Fast scenarios run in the default suite; those that load the `small` preset, train, or take minutes are `slow`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from docs_commands import REPO_ROOT, DocCommand, commands_in, documented_commands
from PIL import Image

VENV_BIN = Path(sys.executable).parent
CHEST_SOURCE = "vqa-rad/images/synpic42202.jpg"  # a 1024 x 1291 chest radiograph

GPU_8B = "the 8B model: its weights (16 GB, not in this environment) and GPUs"
NETWORK = "sends the records to a remote LLM (Anthropic's API or a GPU server); the wire formats are tested against a scripted server in tests/instruct/"

NOT_RUN: dict[str, str] = {
    "make demo": "a Makefile target: runs in the checkout by definition; it is `make setup` (what built this environment) "
    "and `llama3med demo`, which tests/experiments/test_demo.py runs end to end",
    "make test": "runs this test suite itself",
    "/usr/bin/time -v .venv/bin/llama3med eval --model small --benchmarks pathvqa --data-root ../shared/benchmarks "
    "--out growth-N --batch-size 64 --threads 2 --limit N": "a template of a measurement (N is 100, 1,000 or all of "
    "PathVQA's 6,719 questions, up to half an hour on 2 cores); `llama3med eval` itself runs in the small_model and "
    "eval_all_three scenarios",
    "nice -n 5 .venv/bin/python bench/eval_batched_vs_loop.py --threads 1 --batch-size 64": "a recorded benchmark "
    "(the full VQA-RAD test and a 300-question PathVQA slice, both ways: over an hour on 2 cores)",
    ".venv/bin/python bench/eval_batched_vs_loop.py --slices vqa-rad --threads 1 --batch-size 64 --data-root "
    "../shared/benchmarks": "a recorded benchmark (the full VQA-RAD test both ways: about 20 minutes on 2 cores)",
    ".venv/bin/python bench/eval_batched_vs_loop.py --threads 2 --batch-size 64 --data-root ../shared/benchmarks": "a "
    "recorded benchmark (the full VQA-RAD test and a 300-question PathVQA slice, both ways: about 16 minutes on 2 cores)",
    ".venv/bin/python bench/cpu_settings.py --threads 2 --tiles 16 --repeats 5 --before 97f80bd": "a recorded benchmark: "
    "five fresh processes timing the real EfficientNet-Lite0, one of them from an unpacked older commit (~1 min)",
    ".venv/bin/python bench/cpu_settings.py --threads 2 --tiles 16 --repeats 5": "a recorded benchmark: four fresh "
    "processes timing the real EfficientNet-Lite0 (~1 min); the settings it times are those every command applies",
    ".venv/bin/python bench/serve_dynamic_batching.py --model small --clients 1,4,16 --arms batching --distinct-images "
    "--threads 2": "a recorded benchmark of the real `small` server under 1/4/16 clients (a few minutes); the serve "
    "scenario and tests/serve/test_load.py start the same server",
    "llama3med build llama3-med-8b-authors --llm-path /models/Meta-Llama-3.1-8B-Instruct --vision-path "
    "/models/clip-vit-large-patch14 --out models/llama3-med-8b-authors": GPU_8B,
    "llama3med build llama3-med-8b-authors --llm-path /models/Llama-3.1-8B-Instruct --vision-path "
    "/models/clip-vit-large-patch14 --out models/llama3-med-8b-authors": GPU_8B,
    "llama3med instruct generate --input captions.jsonl --out /data/llama3med_instruct --generators-file generators.yaml": NETWORK,
    "torchrun --nproc_per_node 8 -m llama3med train llama3-med-8b-align": GPU_8B + " (8 GPUs)",
    "torchrun --nproc_per_node 8 -m llama3med train llama3-med-8b-instruct": GPU_8B + " (8 GPUs)",
    "llama3med eval --model outputs/llama3-med-8b-instruct --benchmarks vqa-rad,slake,pathvqa --out eval-results/llama3-med-8b": GPU_8B,
    "llama3med serve --model outputs/llama3-med-8b-instruct --device cuda": GPU_8B,
    "vllm serve /models/llava-med --port 8000": "vLLM serving LLaVA-Med needs a GPU and LLaVA-Med's weights",
    "llama3med eval --endpoint http://127.0.0.1:8000/v1 --served-model /models/llava-med --benchmarks vqa-rad,slake,pathvqa "
    "--concurrency 8 --retries 3": "talks to the vLLM server above; `eval --endpoint` against a local server is tested in "
    "tests/eval/test_answerers.py",
    "export ANTHROPIC_API_KEY=...": "a placeholder for the reader's API key, for the Anthropic command below",
    "llama3med instruct generate --input data/captions-with-context.jsonl --out data/instruct --generator "
    "anthropic:claude-3-opus-20240229 --concurrency 8": NETWORK,
    "llama3med instruct generate --input data/captions-with-context.jsonl --out data/instruct --generator "
    "anthropic-batch:claude-3-opus-20240229": NETWORK,
    "vllm serve meta-llama/Meta-Llama-3-70B-Instruct --tensor-parallel-size 4 --max-model-len 8192 --port 8000 "
    '--api-key "$VLLM_API_KEY"': "Llama-3-70B on 4 GPUs",
    'export OPENAI_API_KEY="$VLLM_API_KEY"': "the key of the GPU server above",
    "llama3med instruct generate --input data/captions-with-context.jsonl --out data/instruct --generator "
    "openai:meta-llama/Meta-Llama-3-70B-Instruct@http://gpu-host:8000/v1 --concurrency 32": NETWORK,
    "llama3med instruct generate --input captions.jsonl --out data/instruct --generators-file generators.yaml": NETWORK,
    "llama3med instruct generate ... --generators-file generators.yaml -g claude-opus:1 -g llama3-70b:2": "elided arguments "
    "(shows the -g syntax); " + NETWORK,
    "llama3med instruct generate --input captions.jsonl --out pilot --limit 100 -g anthropic:claude-3-opus-20240229": NETWORK,
    "llama3med merge outputs/llama3-med-8b-instruct-lora outputs/llama3-med-8b-merged": "its input is the 8B LoRA run's output "
    "(GPUs); merge is run on a tiny LoRA output in tests/train/test_lora.py",
    "torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 -m llama3med train "
    "llama3-med-8b-instruct": GPU_8B + " (2 nodes)",
    "accelerate launch --num_processes 8 -m llama3med train llama3-med-8b-align": GPU_8B + " (8 GPUs)",
    "deepspeed --num_gpus 8 --module llama3med train llama3-med-8b-instruct-lora": GPU_8B + " (8 GPUs)",
    "pip install 'llama3med[gpu]'": "changes the environment (installs DeepSpeed and bitsandbytes from PyPI)",
    "torchrun --nproc_per_node 8 -m llama3med train llama3-med-8b-instruct-lora": GPU_8B + " (8 GPUs)",
}

RUN_BY: dict[str, str] = {
    # fast: the default suite
    'python -c "import json,sys;[print(json.dumps({\'id\': json.loads(l)[\'id\'], \'prediction\': sys.argv[1]})) for l in '
    'open(sys.argv[2])]" yes "$LLAMA3MED_DATA_ROOT/vqa-rad/test.jsonl" > yes-vqa-rad.jsonl': "score",
    "llama3med score --benchmark vqa-rad --predictions yes-vqa-rad.jsonl --out yes-vqa-rad.json": "score",
    "llama3med score --benchmark vqa-rad --predictions my-predictions.jsonl --out scores.json": "score",
    "llama3med inspect-image scan.dcm --window lung --out scan.png": "inspect_image",
    "llama3med inspect-image vol.nii.gz --montage 16 --out vol.png": "inspect_image",
    'S="$LLAMA3MED_DATA_ROOT/captions-sample"': "instruct_offline",
    "llama3med instruct medpix-context --captions $S/captions.jsonl --cases $S/original/medpix/data_test.jsonl "
    "--out data/captions-with-context.jsonl": "instruct_offline",
    "llama3med instruct estimate --input data/captions-with-context.jsonl --generators-file generators.yaml": "instruct_offline",
    "llama3med instruct stats --out data/instruct": "instruct_offline",
    "llama3med instruct estimate --input captions.jsonl --from-out pilot --generators-file generators.yaml": "instruct_offline",
    "llama3med build tiny --out runs/tiny": "build_tiny",
    # slow
    "llama3med train tiny-align": "tiny_training",
    "llama3med train tiny-instruct": "tiny_training",
    "llama3med train my-recipe.yaml training.max_steps=100 data.0.max_samples=500 learning_rates.llm=1e-5": "tiny_training",
    "llama3med train tiny-instruct --resume": "tiny_training",
    "llama3med train tiny-instruct --strict": "tiny_training",
    "torchrun --nproc_per_node 2 -m llama3med train tiny-instruct training.deepspeed=zero3": "deepspeed_on_cpu",
    "llama3med build small --out models/small": "small_model",
    "llama3med build small --out runs/small": "small_model",
    "llama3med info models/small": "small_model",
    'llama3med ask chest.png "Is there a pneumothorax?" --model runs/small': "small_model",
    'llama3med ask head_ct.dcm "Is there a bleed?" --model runs/small --window 40,80': "small_model",
    "llama3med chat chest.png --model runs/small": "small_model",
    "llama3med predict --input questions.jsonl --out answers.jsonl --model runs/small --batch-size 8": "small_model",
    'llama3med ask scan.dcm "Is there a fracture?" --model outputs/demo/model': "small_model",
    "llama3med eval --model models/small --benchmarks vqa-rad --out eval/small": "small_model",
    "export LLAMA3MED_API_KEY=$(openssl rand -hex 16)": "serve",
    "llama3med serve --model runs/small --port 8000": "serve",
    'printf \'{"model": "small", "max_tokens": 64, "messages": [{"role": "user", "content": [ {"type": "image_url", "image_url": '
    '{"url": "data:image/png;base64,%s"}}, {"type": "text", "text": "Is there a pleural effusion?"}]}]}\' '
    '"$(base64 < chest.png | tr -d \'\\n\')" > request.json': "serve",
    'curl -s http://127.0.0.1:8000/v1/chat/completions -H "Authorization: Bearer $LLAMA3MED_API_KEY" '
    '-H "Content-Type: application/json" --data-binary @request.json': "serve",
    "llama3med serve --model outputs/demo/model": "serve",
    'llama3med web --model runs/small --examples "$LLAMA3MED_DATA_ROOT/vqa-rad/images" --port 7860': "web",
    "llama3med web --model outputs/demo/model": "web",
    "llama3med eval --model outputs/my-model --benchmarks vqa-rad,slake,pathvqa --out eval-results/my-model": "eval_all_three",
    "llama3med experiment scales --out outputs/experiment-scales --seeds 0,1,2": "scales_experiment",
    "llama3med experiment scales": "scales_experiment",
    "llama3med experiment linear-probe --out outputs/linear-probe": "linear_probe",
    "llama3med experiment linear-probe": "linear_probe",
    ".venv/bin/python bench/feature_cache.py --samples 32 --batch 8": "benchmarks",
    ".venv/bin/python bench/train_step_breakdown.py --batch 8 --repeats 5": "benchmarks",
    ".venv/bin/python bench/startup.py --before 3730d94 --repeat 3": "benchmarks",
}

COMMANDS: dict[str, DocCommand] = {}
for _command in documented_commands():
    COMMANDS.setdefault(_command.key, _command)


# The tables --------------------------------------------------------------------------------------------------
def test_every_documented_command_is_classified() -> None:
    documented = set(COMMANDS)
    unclassified = sorted(documented - NOT_RUN.keys() - RUN_BY.keys())
    assert not unclassified, "add these commands to RUN_BY (and a scenario) or NOT_RUN (with the reason):\n" + "\n".join(
        f"{COMMANDS[key].doc}:{COMMANDS[key].line}: {key!r}" for key in unclassified
    )
    assert not NOT_RUN.keys() & RUN_BY.keys()
    stale = sorted((NOT_RUN.keys() | RUN_BY.keys()) - documented)
    assert not stale, f"no longer in the docs: {stale}"
    scenarios = {name.removeprefix("test_scenario_") for name in globals() if name.startswith("test_scenario_")}
    assert set(RUN_BY.values()) == scenarios


def test_commands_are_read_as_a_reader_copies_them() -> None:
    markdown = "\n".join([
        "```bash", "# a comment line", "llama3med train tiny-instruct   # starts from outputs/tiny-align's connector",
        "llama3med eval --model m \\", "    --out o", "printf '{\"a\": [", "  1]}' > x.json", "```",
        "```python", "print('not a shell command')", "```", "```text", "$ output", "```",
    ])
    commands = commands_in(markdown, "x.md")
    assert [(c.line, c.key) for c in commands] == [
        (3, "llama3med train tiny-instruct"), (4, "llama3med eval --model m --out o"), (6, "printf '{\"a\": [ 1]}' > x.json"),
    ]
    assert commands[2].text == "printf '{\"a\": [\n  1]}' > x.json"


# Running documented commands ---------------------------------------------------------------------------------
class Shell:
    """Runs documented commands, by key and exactly as written, with bash in `cwd` (never the repository root)."""

    def __init__(self, scenario: str, cwd: Path, env: dict[str, str]) -> None:
        assert cwd.resolve() != REPO_ROOT.resolve()
        self.scenario, self.cwd, self.env, self.ran = scenario, cwd, env, []

    def text(self, key: str) -> str:
        self.ran.append(key)
        return COMMANDS[key].text

    def run(self, *keys: str, timeout: float = 600, stdin: str | None = None) -> subprocess.CompletedProcess:
        """Run the commands in one bash (so `S=...` reaches the next one); fail with their output."""
        script = "\n".join(self.text(key) for key in keys)
        result = subprocess.run(["bash", "-c", "set -eo pipefail\n" + script], cwd=self.cwd, env=self.env, input=stdin,
                                capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"{script}\nexit {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        return result

    def export(self, key: str) -> None:
        """Run an `export NAME=...` command and keep what it exports for the commands after it."""
        result = subprocess.run(["bash", "-c", f"{self.text(key)}\nenv -0"], cwd=self.cwd, env=self.env, capture_output=True, check=True)
        self.env = dict(item.split("=", 1) for item in result.stdout.decode().split("\0") if "=" in item)

    def start(self, key: str, ready_url: str, timeout: float = 600) -> subprocess.Popen:
        """Start a server command and wait until `ready_url` answers 200."""
        log = self.cwd / f"server-{len(self.ran)}.log"
        with log.open("w") as handle:
            process = subprocess.Popen(["bash", "-c", "exec " + self.text(key)], cwd=self.cwd, env=self.env, stdout=handle,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    raise AssertionError(f"{key} exited with {process.returncode}:\n{log.read_text()[-4000:]}")
                try:
                    with urllib.request.urlopen(ready_url, timeout=5) as response:
                        if response.status == 200:
                            return process
                except OSError:
                    time.sleep(1)
            raise AssertionError(f"{key}: {ready_url} did not answer within {timeout} s")
        except BaseException:  # a failure or the test's timeout: never leave the server running
            stop(process)
            raise

    def check_all_ran(self) -> None:
        expected = {key for key, scenario in RUN_BY.items() if scenario == self.scenario}
        assert expected <= set(self.ran), f"not run: {sorted(expected - set(self.ran))}"


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def shell(request: pytest.FixtureRequest, benchmarks_dir: Path, tmp_path: Path) -> Iterator[Shell]:
    """A `Shell` for the scenario of the requesting test, in `tmp_path/work`, with the reader's environment:
    the virtual environment's commands on PATH and LLAMA3MED_DATA_ROOT set; no other LLAMA3MED_* setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMA3MED_")}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", LLAMA3MED_DATA_ROOT=str(benchmarks_dir),
               LLAMA3MED_CACHE=str(tmp_path / "cache"), PYTHONUNBUFFERED="1")
    work = tmp_path / "work"
    work.mkdir()
    yield Shell(request.node.name.removeprefix("test_scenario_").split("[")[0], work, env)


def write_chest_png(folder: Path, benchmarks_dir: Path) -> Path:
    with Image.open(benchmarks_dir / CHEST_SOURCE) as image:
        image.convert("RGB").save(folder / "chest.png")
    return folder / "chest.png"


def write_medical_files(folder: Path) -> None:
    """scan.dcm and head_ct.dcm (CT slices with a bright bone ring), vol.nii.gz (a 24-slice volume)."""
    import numpy as np
    from medical_files import ct_dataset, write_dicom, write_nifti

    yy, xx = np.mgrid[-64:64, -64:64]
    radius = np.hypot(yy, xx)
    hu = np.where(radius < 50, 40, -1000) + np.where((radius > 44) & (radius < 50), 1000, 0)
    write_dicom(folder / "scan.dcm", ct_dataset(hu.astype(np.int16)))
    write_dicom(folder / "head_ct.dcm", ct_dataset(hu.astype(np.int16)))
    write_nifti(folder / "vol.nii.gz", np.stack([hu * (z / 24) for z in range(24)]).astype(np.float32))


# Fast scenarios ----------------------------------------------------------------------------------------------
def test_scenario_score(shell: Shell) -> None:
    shell.run(next(k for k in RUN_BY if k.startswith("python -c")),
              "llama3med score --benchmark vqa-rad --predictions yes-vqa-rad.jsonl --out yes-vqa-rad.json")
    scores = json.loads((shell.cwd / "yes-vqa-rad.json").read_text())["benchmarks"]["vqa-rad"]
    assert round(scores["llava_med"]["closed_accuracy"], 2) == 43.38  # the `yes` row of EVALUATION.md's table
    shutil.copy(shell.cwd / "yes-vqa-rad.jsonl", shell.cwd / "my-predictions.jsonl")
    result = shell.run("llama3med score --benchmark vqa-rad --predictions my-predictions.jsonl --out scores.json")
    assert "shared JSONL layout" in result.stdout and (shell.cwd / "scores.json").is_file()
    shell.check_all_ran()


def test_scenario_inspect_image(shell: Shell) -> None:
    write_medical_files(shell.cwd)
    shell.run("llama3med inspect-image scan.dcm --window lung --out scan.png",
              "llama3med inspect-image vol.nii.gz --montage 16 --out vol.png")
    for name in ("scan.png", "vol.png"):
        with Image.open(shell.cwd / name) as image:
            assert image.format == "PNG"
    shell.check_all_ran()


def documented_generators_yaml() -> str:
    """The generators.yaml example of INSTRUCT_DATA.md, as a reader saves it."""
    text = (REPO_ROOT / "docs" / "INSTRUCT_DATA.md").read_text(encoding="utf-8")
    return re.search(r"```yaml\n# generators.yaml\n(.*?)```", text, re.S).group(1)


def instruct_output_folder(shell: Shell, out: str, captions: str) -> None:
    """An `instruct generate` output folder, written by the real command against the scripted Anthropic-format
    server of tests/instruct (this machine reaches no LLM)."""
    module = sys.modules.get("instruct.wire_server")  # the name tests/instruct's conftest imports it under
    if module is None:  # not yet imported by tests/instruct's conftest
        spec = importlib.util.spec_from_file_location("instruct.wire_server", REPO_ROOT / "tests" / "instruct" / "wire_server.py")
        module = sys.modules["instruct.wire_server"] = importlib.util.module_from_spec(spec)  # dataclasses look it up there
        spec.loader.exec_module(module)
    with module.WireServer(api_key="sk-docs-check") as server:
        env = {**shell.env, "ANTHROPIC_API_KEY": "sk-docs-check"}
        args = ["llama3med", "instruct", "generate", "--input", captions, "--out", out, "--limit", "6",
                "-g", f"anthropic:claude-3-opus-20240229@{server.url}"]
        result = subprocess.run(args, cwd=shell.cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_scenario_instruct_offline(shell: Shell) -> None:
    result = shell.run('S="$LLAMA3MED_DATA_ROOT/captions-sample"', next(k for k in RUN_BY if "medpix-context" in k))
    assert "data/captions-with-context.jsonl: 210 rows, 200 with context" in result.stdout  # the doc's comment
    (shell.cwd / "generators.yaml").write_text(documented_generators_yaml(), encoding="utf-8")
    result = shell.run("llama3med instruct estimate --input data/captions-with-context.jsonl --generators-file generators.yaml")
    assert "claude-opus" in result.stdout and "llama3-70b" in result.stdout
    instruct_output_folder(shell, "data/instruct", "data/captions-with-context.jsonl")
    result = shell.run("llama3med instruct stats --out data/instruct")
    assert "anthropic:claude-3-opus-20240229" in result.stdout
    shutil.copy(Path(shell.env["LLAMA3MED_DATA_ROOT"]) / "captions-sample" / "captions.jsonl", shell.cwd / "captions.jsonl")
    instruct_output_folder(shell, "pilot", "captions.jsonl")
    result = shell.run("llama3med instruct estimate --input captions.jsonl --from-out pilot --generators-file generators.yaml")
    assert "measured" in result.stdout  # reply tokens from the pilot's results, not the few-shot examples
    shell.check_all_ran()


def test_scenario_build_tiny(shell: Shell) -> None:
    shell.run("llama3med build tiny --out runs/tiny")
    assert json.loads((shell.cwd / "runs" / "tiny" / "config.json").read_text())["model_type"] == "llama3med"
    shell.check_all_ran()


def curl_example(shell: Shell, model_name: str) -> dict:
    """SERVING.md's server block and curl example, against the model folder at runs/small."""
    shell.export("export LLAMA3MED_API_KEY=$(openssl rand -hex 16)")
    server = shell.start("llama3med serve --model runs/small --port 8000", "http://127.0.0.1:8000/health")
    try:
        shell.run(next(k for k in RUN_BY if k.startswith("printf")))
        # A real image: far over one command-line argument's limit (128 KiB), which `curl -d` with the image
        # inline would hit ("Argument list too long").
        assert (shell.cwd / "request.json").stat().st_size > 256 * 1024
        result = shell.run(next(k for k in RUN_BY if k.startswith("curl")))
    finally:
        stop(server)
    reply = json.loads(result.stdout)
    assert reply["model"] == model_name and isinstance(reply["choices"][0]["message"]["content"], str), reply
    assert reply["usage"]["prompt_tokens"] > 0
    return reply


def test_serving_curl_example_sends_a_real_image(shell: Shell, tiny_model_dir: Path, benchmarks_dir: Path) -> None:
    """The curl example in the default suite: the `tiny` preset stands in at runs/small (the slow `serve`
    scenario runs the real `small` build)."""
    write_chest_png(shell.cwd, benchmarks_dir)
    (shell.cwd / "runs").mkdir()
    shutil.copytree(tiny_model_dir, shell.cwd / "runs" / "small")
    curl_example(shell, "small")


# Slow scenarios ----------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_scenario_tiny_training(shell: Shell) -> None:
    shell.run("llama3med train tiny-align", "llama3med train tiny-instruct")
    for run in ("tiny-align", "tiny-instruct"):
        assert (shell.cwd / "outputs" / run / "config.json").is_file()
    recipe = yaml.safe_load((shell.cwd / "outputs" / "tiny-align" / "recipe.yaml").read_text())
    assert recipe["data"][0]["path"] == f"{shell.env['LLAMA3MED_DATA_ROOT']}/captions-sample/captions.jsonl"
    # --resume on a finished run continues from its last checkpoint (nothing left to do); --strict reruns from
    # scratch in a fresh output folder, as a reader who removed the first run would.
    shell.run("llama3med train tiny-instruct --resume")
    shutil.rmtree(shell.cwd / "outputs" / "tiny-instruct")
    shell.run("llama3med train tiny-instruct --strict")
    # my-recipe.yaml: the reader's copy of a shipped recipe (its data under the same data root)
    from llama3med.train.recipe import recipe_path

    (shell.cwd / "my-recipe.yaml").write_text(recipe_path("tiny-instruct").read_text().replace("outputs/tiny-instruct", "outputs/mine"))
    shell.run("llama3med train my-recipe.yaml training.max_steps=100 data.0.max_samples=500 learning_rates.llm=1e-5", timeout=1800)
    assert (shell.cwd / "outputs" / "mine" / "model.safetensors").is_file()
    shell.check_all_ran()


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_scenario_deepspeed_on_cpu(shell: Shell) -> None:
    pytest.importorskip("deepspeed", reason="the documented command needs llama3med[gpu] (DeepSpeed)")
    shell.run("llama3med train tiny-align")
    shell.run("torchrun --nproc_per_node 2 -m llama3med train tiny-instruct training.deepspeed=zero3", timeout=1800)
    shell.check_all_ran()


def small_model_folders(shell: Shell) -> None:
    """runs/small as SERVING.md builds it, and outputs/demo/model: the demo's trained model, for which the
    `small` build stands in (training it is `llama3med demo`, tests/experiments)."""
    shell.run("llama3med build small --out runs/small")
    (shell.cwd / "outputs" / "demo").mkdir(parents=True)
    (shell.cwd / "outputs" / "demo" / "model").symlink_to(shell.cwd / "runs" / "small")


@pytest.mark.slow
@pytest.mark.timeout(7200)
def test_scenario_small_model(shell: Shell, benchmarks_dir: Path) -> None:
    write_chest_png(shell.cwd, benchmarks_dir)
    write_medical_files(shell.cwd)
    shell.run("llama3med build small --out models/small")
    result = shell.run("llama3med info models/small")
    assert "49 (7 x 7)" in result.stdout  # visual tokens per image
    small_model_folders(shell)
    for key in ('llama3med ask chest.png "Is there a pneumothorax?" --model runs/small',
                'llama3med ask head_ct.dcm "Is there a bleed?" --model runs/small --window 40,80',
                'llama3med ask scan.dcm "Is there a fracture?" --model outputs/demo/model'):
        assert shell.run(key, timeout=1800).stdout.strip()
    result = shell.run("llama3med chat chest.png --model runs/small", stdin="Is there an effusion?\n/exit\n", timeout=1800)
    assert "you>" in result.stdout
    (shell.cwd / "questions.jsonl").write_text("".join(
        json.dumps({"id": f"q{i}", "image": "chest.png", "question": q}) + "\n"
        for i, q in enumerate(["Is there a pneumothorax?", "Which side is the heart on?"])
    ))
    shell.run("llama3med predict --input questions.jsonl --out answers.jsonl --model runs/small --batch-size 8", timeout=1800)
    assert [json.loads(line)["id"] for line in (shell.cwd / "answers.jsonl").read_text().splitlines()] == ["q0", "q1"]
    shell.run("llama3med eval --model models/small --benchmarks vqa-rad --out eval/small", timeout=5400)
    assert json.loads((shell.cwd / "eval" / "small" / "report.json").read_text())["benchmarks"]["vqa-rad"]["counts"]["questions"] == 451
    shell.check_all_ran()


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_scenario_serve(shell: Shell, benchmarks_dir: Path) -> None:
    write_chest_png(shell.cwd, benchmarks_dir)
    small_model_folders(shell)
    curl_example(shell, "small")
    server = shell.start("llama3med serve --model outputs/demo/model", "http://127.0.0.1:8000/health")
    stop(server)
    shell.check_all_ran()


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_scenario_web(shell: Shell) -> None:
    small_model_folders(shell)
    stop(shell.start('llama3med web --model runs/small --examples "$LLAMA3MED_DATA_ROOT/vqa-rad/images" --port 7860',
                     "http://127.0.0.1:7860/"))
    stop(shell.start("llama3med web --model outputs/demo/model", "http://127.0.0.1:7860/"))
    shell.check_all_ran()


@pytest.mark.slow
@pytest.mark.timeout(3 * 3600)
def test_scenario_eval_all_three(shell: Shell, tiny_model_dir: Path) -> None:
    """`outputs/my-model` is any model folder: the `tiny` preset here (8,231 questions)."""
    (shell.cwd / "outputs").mkdir()
    shutil.copytree(tiny_model_dir, shell.cwd / "outputs" / "my-model")
    shell.run("llama3med eval --model outputs/my-model --benchmarks vqa-rad,slake,pathvqa --out eval-results/my-model", timeout=3 * 3600)
    report = json.loads((shell.cwd / "eval-results" / "my-model" / "report.json").read_text())
    assert [report["benchmarks"][n]["counts"]["questions"] for n in ("vqa-rad", "slake", "pathvqa")] == [451, 1061, 6719]
    shell.check_all_ran()


@pytest.mark.slow
@pytest.mark.timeout(4 * 3600)
def test_scenario_scales_experiment(shell: Shell) -> None:
    """51 min on a quiet 2-core machine (EXPERIMENTS.md); the README's form has the same defaults and reuses
    the finished runs."""
    shell.run("llama3med experiment scales --out outputs/experiment-scales --seeds 0,1,2", timeout=4 * 3600)
    assert (shell.cwd / "outputs" / "experiment-scales" / "summary.json").is_file()
    shell.run("llama3med experiment scales", timeout=3600)
    shell.check_all_ran()


@pytest.mark.slow
@pytest.mark.timeout(2 * 3600)
def test_scenario_linear_probe(shell: Shell) -> None:
    """The calibrated probe's acceptance, as EXPERIMENTS.md records it: presence readable from the 896 px view
    (single-896, and the hierarchical arm's 896 px slice) at >= 0.90, from the 224 px view at <= 0.65."""
    shell.run("llama3med experiment linear-probe --out outputs/linear-probe", timeout=2 * 3600)
    arms = json.loads((shell.cwd / "outputs" / "linear-probe" / "summary.json").read_text())["arms"]
    assert arms["single-896"]["presence"]["test_accuracy"] >= 0.90
    assert arms["hierarchical"]["slices"]["896"]["presence"]["test_accuracy"] >= 0.90
    assert arms["single-224"]["presence"]["test_accuracy"] <= 0.65
    assert arms["hierarchical"]["slices"]["224"]["presence"]["test_accuracy"] <= 0.65
    shell.run("llama3med experiment linear-probe", timeout=2 * 3600)  # the README's form: the same defaults
    shell.check_all_ran()


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_scenario_benchmarks(shell: Shell) -> None:
    """PERFORMANCE.md's benchmark scripts are run from a clone (`.venv/bin/python bench/...`): here from a folder
    that links the checkout's `.venv` and `bench/`, so that nothing they read or write depends on being there."""
    for name in (".venv", "bench"):
        (shell.cwd / name).symlink_to(REPO_ROOT / name)
    result = shell.run(".venv/bin/python bench/feature_cache.py --samples 32 --batch 8", timeout=1800)
    assert "| warm (features from disk) |" in result.stdout
    result = shell.run(".venv/bin/python bench/train_step_breakdown.py --batch 8 --repeats 5", timeout=1800)
    assert result.stdout.strip()
    result = shell.run(".venv/bin/python bench/startup.py --before 3730d94 --repeat 3", timeout=1800)
    assert "llama3med --help" in result.stdout
    shell.check_all_ran()
