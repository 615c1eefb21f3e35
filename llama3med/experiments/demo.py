"""The main job on the embedded default: probe data -> stage 1 -> stage 2 -> evaluation -> an answer.

`run_demo` is what `llama3med demo` (and `make demo`) runs: on the `small` preset (SmolLM2-135M-Instruct +
EfficientNet-Lite0, real weights, offline), in minutes on a 2-core CPU. With `data_dir`, the same pipeline
fine-tunes on `<data_dir>/train.jsonl` and evaluates on `<data_dir>/test.jsonl` (a folder laid out like
a VQA-RAD benchmark folder); the result is a fine-tuned number, never a zero-shot one.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llama3med.train.recipe import Recipe

Log = Callable[[str], None]
DataList = list[dict[str, str]]  # a recipe's `data` list: {"path", "format", "image_root"} per source


@dataclass
class DemoSettings:
    """Sizes and rates of the demo run, chosen so that `llama3med demo` learns to see the probe's targets within
    10 minutes on a quiet 2-core CPU (docs/EXPERIMENTS.md has the runs behind each choice).

    Stage 2 trains on the probe's presence questions alone (`instruct_data="presence"`, evaluated on the test
    images' presence questions): one short answer per image, and every step asks the one thing the test
    measures. It trains LoRA adapters (rank 16 on every linear layer of the LLM) and the connector at a constant
    1e-3: a LoRA step costs less than a full one, and full fine-tuning at 2e-4 reached 0.84 in 100 steps where LoRA
    reached 1.00 in 160. The loss stays at chance for the first 70-90 steps (the attention has to find the one token
    of 49 that holds a target), so 112 steps is close to the least that works; 160 train images keep those steps at
    under six epochs, so that the model cannot pass by remembering images. The `small` preset's connector
    standardises its input (`connector_input_norm`); without that, a hundred steps stay at chance."""

    preset: str = "small"
    seed: int = 0
    probe_train: int = 160
    probe_test: int = 80
    probe_size: int | None = None  # the probe format's own size (896 px for format 2)
    probe_format: int | None = None  # None: the calibrated default (llama3med.experiments.probe.generate.FORMAT_VERSION)
    align_steps: int = 16
    instruct_steps: int = 112
    batch_size: int = 8
    # Stage 2 on a probe: "presence" (train.jsonl's PRES questions; only those are evaluated), "vqa" (all of
    # train.jsonl) or "conversations" (conversations.jsonl).
    instruct_data: str = "presence"
    lora_rank: int = 16  # stage 2's LoRA rank (alpha = 2 x rank, no dropout); 0: full fine-tuning
    connector_lr: float = 1e-3  # stage 2's rates and schedule (stage 1 keeps its recipe's)
    llm_lr: float = 1e-3  # the adapters' rate with LoRA, the LLM's without
    lr_scheduler: str = "constant"
    eval_limit: int | None = None
    eval_batch_size: int = 16
    max_new_tokens: int = 12
    model_args: dict[str, Any] = field(default_factory=dict)  # architecture changes on top of the recipes' (scales...)


@dataclass
class DemoResult:
    """Where everything went and the headline figures."""

    data_dir: Path
    align_dir: Path
    model_dir: Path
    eval_dir: Path
    report: dict[str, Any]
    label: str
    example: dict[str, str]
    presence: dict[str, Any] | None = None  # probe runs: PRES accuracy, its 95 % CI and the linear-probe ceiling


def _data_list(path: Path, fmt: str, image_root: Path) -> DataList:
    return [{"path": str(path), "format": fmt, "image_root": str(image_root)}]


INSTRUCT_DATA = ("presence", "vqa", "conversations")
PRESENCE = "PRES"  # the probe's presence question type


def is_presence(question_id: str) -> bool:
    """A probe presence question (the probe's ids end in `-pres`)."""
    return question_id.endswith("-pres")


def is_probe(data_dir: Path) -> bool:
    """A probe folder (captions and conversations beside its VQA splits, targets.jsonl as ground truth)."""
    return all((Path(data_dir) / name).is_file() for name in ("captions.jsonl", "conversations.jsonl", "targets.jsonl"))


def stage_data(data_dir: Path, instruct_data: str = "vqa", work_dir: Path | None = None) -> tuple[DataList, DataList, str]:
    """The recipes' data lists for stage 1 and stage 2, and the label of the result, for a data folder.

    A probe folder has captions (stage 1) and, for stage 2, its presence questions (`instruct_data="presence"`,
    written to `work_dir/presence-train.jsonl`), all its VQA questions (`"vqa"`) or its conversations
    (`"conversations"`); any other folder laid out like a VQA-RAD benchmark folder trains both stages on its
    `train.jsonl` questions."""
    images = data_dir / "images"
    if not (data_dir / "train.jsonl").is_file() or not (data_dir / "test.jsonl").is_file():
        raise FileNotFoundError(f"{data_dir} needs train.jsonl, test.jsonl and images/ (the layout of a VQA-RAD benchmark folder)")
    if is_probe(data_dir):
        if instruct_data not in INSTRUCT_DATA:
            raise ValueError(f"instruct_data must be one of {INSTRUCT_DATA}, got {instruct_data!r}")
        if instruct_data == "presence":
            if work_dir is None:
                raise ValueError("instruct_data='presence' needs a work_dir for its question file")
            stage2 = _data_list(presence_questions(data_dir / "train.jsonl", Path(work_dir) / "presence-train.jsonl"),
                                "vqa", images)
        elif instruct_data == "vqa":
            stage2 = _data_list(data_dir / "train.jsonl", "vqa", images)
        else:
            stage2 = _data_list(data_dir / "conversations.jsonl", "llava", images)
        return (_data_list(data_dir / "captions.jsonl", "caption", images), stage2,
                "fine-tuned on the probe's train split (test images are unseen)")
    vqa = _data_list(data_dir / "train.jsonl", "vqa", images)
    return vqa, vqa, f"fine-tuned on {data_dir / 'train.jsonl'} (not zero-shot)"


def presence_questions(questions: Path, out: Path) -> Path:
    """Write the presence (PRES) questions of a probe split's VQA JSONL to `out` (atomically); returns `out`."""
    from llama3med.io.jsonl import read_jsonl, write_jsonl

    out.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(out, [row for _, row in read_jsonl(questions) if row.get("question_type") == PRESENCE])
    return out


def stage_recipe(
    stage: str, settings: DemoSettings, output_dir: Path, data: DataList, steps: int,
    training: dict[str, Any] | None = None, **changes: Any,
) -> Recipe:
    """The shipped `<preset>-<stage>` recipe with the demo's output folder, data, seed, steps, batch size and
    model changes, and no intermediate checkpoints (`save_steps` beyond the run); `training` sets other
    `training:` keys, `changes` other recipe fields (stage 2's `connector`, `feature_cache`, `learning_rates`).
    Equal to `llama3med train <preset>-<stage>` with the matching `key=value` overrides."""
    from llama3med.train.recipe import load_recipe

    recipe = load_recipe(f"{settings.preset}-{stage}")
    training = {**recipe.training, "max_steps": steps, "per_device_train_batch_size": settings.batch_size,
                "logging_steps": 4, "save_steps": 1_000_000, "dataloader_num_workers": 0, **(training or {})}
    # `replace` builds a new Recipe, so its checks run again and its data sources follow the new data list
    return replace(recipe, output_dir=str(output_dir), data=data, seed=settings.seed, training=training,
                   model_args={**recipe.model_args, **settings.model_args}, **changes)


def _train_stage(recipe: Recipe, log: Log) -> Path:
    from llama3med.folders import ADAPTER_CONFIG_FILE, CONFIG_FILE
    from llama3med.train.outputs import REPORT_FILE
    from llama3med.train.run import train
    from llama3med.train.trainer import last_complete_checkpoint

    output_dir = Path(recipe.output_dir)
    model_file = ADAPTER_CONFIG_FILE if recipe.lora else CONFIG_FILE
    if (output_dir / model_file).is_file() and (output_dir / REPORT_FILE).is_file():  # written last
        log(f"{recipe.stage}: already done in {output_dir}")
        return output_dir
    resume = last_complete_checkpoint(output_dir / "checkpoints") is not None
    result = train(recipe, resume=resume)
    if result.losses:
        log(f"{recipe.stage}: {result.global_step} steps, loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f}")
    return result.output_dir


def run_demo(out: Path, settings: DemoSettings, data_dir: Path | None = None, log: Log = print) -> DemoResult:
    """Run the whole pipeline into `out` (a rerun resumes or reuses finished stages)."""
    from llama3med.eval.answerers import Llama3MedAnswerer
    from llama3med.eval.data_specs import load_custom
    from llama3med.eval.pipeline import evaluate
    from llama3med.eval.report import write_report
    from llama3med.eval.templates import PromptTemplates
    from llama3med.folders import feature_cache_dir
    from llama3med.generation import GenerationSettings

    out = Path(out)
    command = demo_command(out, settings, data_dir)
    if data_dir is None:
        from llama3med.experiments.probe.generate import generate_probe

        data_dir = out / "probe"
        summary = generate_probe(data_dir, seed=settings.seed, n_train=settings.probe_train,
                                 n_test=settings.probe_test, size=settings.probe_size, version=settings.probe_format)
        log(f"probe: {summary.n_train} train + {summary.n_test} test images at {summary.size} px in {data_dir}")
    data_dir = Path(data_dir)
    align_data, instruct_data, label = stage_data(data_dir, settings.instruct_data, out)
    align_dir = _train_stage(stage_recipe("align", settings, out / "align", align_data, settings.align_steps), log)
    model_dir = _train_stage(
        stage_recipe("instruct", settings, out / "model", instruct_data, settings.instruct_steps,
                     {"lr_scheduler_type": settings.lr_scheduler, "warmup_steps": 0}, connector=str(align_dir),
                     feature_cache=True, learning_rates={"connector": settings.connector_lr, "llm": settings.llm_lr},
                     lora={"r": settings.lora_rank, "alpha": 2 * settings.lora_rank, "dropout": 0.0} if settings.lora_rank else None),
        log,
    )
    decoding = GenerationSettings(max_new_tokens=settings.max_new_tokens, temperature=0.0, top_p=1.0, seed=settings.seed)
    answerer = Llama3MedAnswerer.from_pretrained(model_dir, decoding)
    # Training's frozen-feature cache: the test images are encoded once, for the evaluation and the ceiling both.
    answerer.api.use_feature_cache(feature_cache_dir())
    benchmark = load_custom(data_dir)  # `<folder>/test`: test.jsonl with images/
    if settings.instruct_data == "presence" and is_probe(data_dir):  # evaluated on what it was taught
        benchmark = replace(benchmark, questions=[q for q in benchmark.questions if is_presence(q.id)])
    eval_dir = out / "eval"
    report = evaluate(answerer, [benchmark], PromptTemplates.load(), eval_dir, decoding=decoding,
                      batch_size=settings.eval_batch_size, limit=settings.eval_limit, model_dir=model_dir,
                      command=command)
    # The model was trained on this data's train split: whatever the image-overlap check says, the
    # numbers are fine-tuned ones.
    report["label"] = "fine-tuned"
    write_report(report, eval_dir)
    presence = None
    if is_probe(data_dir):  # PRES with its interval, beside what the features allow
        from llama3med.experiments.linear_probe import presence_ceiling

        presence = presence_accuracy(eval_dir, report)
        presence["ceiling"] = presence_ceiling(
            data_dir, answerer.api.model, answerer.api.processor, seed=settings.seed, log=log
        )
    first = example_question(benchmark.questions, eval_dir, report, data_dir)
    answer = answerer.api.chat(first.image, first.question, max_new_tokens=settings.max_new_tokens)
    example = {"image": str(first.image), "question": first.question, "answer": answer, "reference": first.answer}
    if is_probe(data_dir):
        example["why"] = target_description(data_dir, Path(first.image).name)
    return DemoResult(data_dir, align_dir, model_dir, eval_dir, report, label, example, presence)


def prediction_rows(eval_dir: Path, report: dict[str, Any]) -> list[dict[str, Any]]:
    """The evaluation's per-question rows (question id, prediction, reference, scores) of the one data set."""
    from llama3med.io.jsonl import read_jsonl

    name = next(iter(report["benchmarks"]))
    return [row for _, row in read_jsonl(Path(eval_dir) / "predictions" / f"{name}.jsonl")]


def presence_accuracy(eval_dir: Path, report: dict[str, Any]) -> dict[str, Any]:
    """Strict accuracy of the probe's presence (PRES) questions with a 95 % bootstrap interval over them."""
    from llama3med.eval.intervals import bootstrap_interval

    correct = [row["scores"]["strict_closed_accuracy"] for row in prediction_rows(eval_dir, report)
               if is_presence(row["id"])]
    accuracy = sum(correct) / len(correct) if correct else float("nan")
    return {"accuracy": accuracy, "ci95": list(bootstrap_interval(correct)), "n": len(correct)}


def example_question(questions: list[Any], eval_dir: Path, report: dict[str, Any], data_dir: Path) -> Any:
    """The question the demo answers at the end: on a probe, the first presence question about an image with
    targets that the model answered correctly (so that the answer has a visible reason); else the first."""
    if is_probe(data_dir):
        right = {row["id"] for row in prediction_rows(eval_dir, report)
                 if row["scores"].get("strict_closed_accuracy") == 1.0}
        for question in questions:
            if is_presence(question.id) and question.answer == "yes" and question.id in right:
                return question
    return questions[0]


def target_description(data_dir: Path, image_file: str) -> str:
    """Where the targets of one probe image are, in words and pixels (from targets.jsonl)."""
    from llama3med.io.jsonl import read_jsonl

    for _, record in read_jsonl(data_dir / "targets.jsonl"):
        if record["image"] == image_file:
            if not record["targets"]:
                return "the image has no target"
            return "; ".join(
                f"{t['kind']} in the {t['place']}, {2 * t['radius']:.0f} px across at ({t['x']:.0f}, {t['y']:.0f})"
                for t in record["targets"]
            )
    return "not a probe image"


def demo_command(out: Path, settings: DemoSettings, data_dir: Path | None) -> str:
    """The `llama3med demo` command line that reruns these settings (settings the command line cannot set, as
    the scales experiment's model overrides, are named after it)."""
    args = ["llama3med", "demo", "--out", str(out), *(["--data", str(data_dir)] if data_dir is not None else []),
            "--preset", settings.preset, "--seed", str(settings.seed), "--align-steps", str(settings.align_steps),
            "--instruct-steps", str(settings.instruct_steps), "--batch-size", str(settings.batch_size)]
    if data_dir is None:
        args += ["--probe-train", str(settings.probe_train), "--probe-test", str(settings.probe_test),
                 "--instruct-data", settings.instruct_data]
    if settings.eval_limit is not None:
        args += ["--eval-limit", str(settings.eval_limit)]
    on_command_line = {"preset", "seed", "align_steps", "instruct_steps", "probe_train", "probe_test", "eval_limit",
                       "batch_size", "instruct_data"}
    default = DemoSettings()
    other = {f.name: getattr(settings, f.name) for f in fields(DemoSettings)
             if f.name not in on_command_line and getattr(settings, f.name) != getattr(default, f.name)}
    return shlex.join(args) + (f" (with DemoSettings {other})" if other else "")


def probe_rows(report: dict[str, Any]) -> list[tuple[str, int, str, str]]:
    """(question type, count, LLaVA-Med score, strict score) for every question type and overall, in %.

    Closed types report accuracy (LLaVA-Med substring rule / first yes-no word); open types report
    recall / exact match."""
    results = next(iter(report["benchmarks"].values()))

    def pct(value: float | None) -> str:
        return "–" if value is None else f"{value:.1f}"

    rows = []
    for name, stats in results["breakdowns"].get("question_type", {}).items():
        if stats["closed"]:
            rows.append((name, stats["count"], pct(stats["llava_med_closed_accuracy"]), pct(stats["strict_closed_accuracy"])))
        else:
            rows.append((name, stats["count"], pct(stats["llava_med_open_recall"]), pct(stats["open_exact_match"])))
    counts = results["counts"]
    rows.append(("closed (all)", counts["closed"], pct(results["llava_med"]["closed_accuracy"]),
                 pct(results["strict"]["closed_accuracy"])))
    rows.append(("open (all)", counts["open"], pct(results["llava_med"]["open_recall"]),
                 pct(results["strict"]["open_exact_match"])))
    return rows
