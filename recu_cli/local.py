"""Local commands, no service: train a model, evaluate, export and inspect its files.

recu train --model resnet20 --dataset digits --epochs 30 -o var/runs/resnet20.safetensors
recu train --config run.json --set optimizer.lr=0.05 --set binary_options.clamp=false
recu evaluate var/runs/resnet20.safetensors
recu inspect var/runs/resnet20.safetensors
recu inspect var/runs/resnet20.bnn
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from recu_cli.devices import device_problem
from recu_cli.errors import load_settings, stderr, usage_error
from recu_cli.model_info import bnn_summary
from recu_cli.output import percent, print_json
from recu_cli.overrides import SpecError
from recu_cli.specs import SetOption, build_spec, validate
from recu_core.config import DatasetName, InferenceEngine, ModelName, TrainConfig
from recu_core.recipes import RecipeName
from recu_core.settings import DataSettings

console = Console()

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "--spec",
        help="A JSON (or .yaml) file of the fields to set; the options below override it.",
    ),
]


def train(
    config: ConfigOption = None,
    overrides: SetOption = None,
    recipe: Annotated[
        RecipeName | None,
        typer.Option(help="Start from an official run's preset; other fields override it."),
    ] = None,
    model: Annotated[ModelName | None, typer.Option(help="model")] = None,
    dataset: Annotated[DatasetName | None, typer.Option(help="dataset.name")] = None,
    data_root: Annotated[
        str | None, typer.Option(help="dataset.root: relative to RECU_DATA_DIR, or absolute.")
    ] = None,
    num_train: Annotated[int | None, typer.Option(help="dataset.num_train")] = None,
    val_fraction: Annotated[float | None, typer.Option(help="dataset.val_fraction")] = None,
    epochs: Annotated[int | None, typer.Option(help="epochs (default 30)")] = None,
    batch_size: Annotated[int | None, typer.Option(help="batch_size (default 128)")] = None,
    lr: Annotated[float | None, typer.Option(help="optimizer.lr (default 0.1)")] = None,
    tau_s: Annotated[float | None, typer.Option(help="tau.tau_s (default 0.85)")] = None,
    tau_e: Annotated[float | None, typer.Option(help="tau.tau_e (default 0.99)")] = None,
    seed: Annotated[int | None, typer.Option(help="seed")] = None,
    device: Annotated[str | None, typer.Option(help="device: auto, cpu, cuda, cuda:N")] = None,
    output: Annotated[
        Path,
        typer.Option(
            "-o", "--output", help="Final checkpoint path; the best epoch's goes to NAME.best.*"
        ),
    ] = Path("var/runs/last.safetensors"),
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Resume from this checkpoint (its recipe; flags set only where it runs)."
        ),
    ] = None,
    save_every: Annotated[
        int, typer.Option(min=1, help="Overwrite the checkpoint every N epochs (resumable).")
    ] = 1,
    metrics_json: Annotated[
        Path | None, typer.Option(help="Also write the per-epoch history here.")
    ] = None,
    print_config: Annotated[
        bool,
        typer.Option(
            "--print-config", help="Print the validated config as JSON and exit; no training."
        ),
    ] = False,
) -> None:
    """Train a model locally and write a resumable safetensors checkpoint. Every field of
    the run can be set with --config and --set (--print-config shows them all)."""
    from recu_core.checkpoint import load_checkpoint
    from recu_core.train import EXECUTION_FIELDS

    shortcuts = {
        "recipe": recipe,
        "model": model,
        "dataset.name": dataset,
        "dataset.root": data_root,
        "dataset.num_train": num_train,
        "dataset.val_fraction": val_fraction,
        "epochs": epochs,
        "batch_size": batch_size,
        "optimizer.lr": lr,
        "tau.tau_s": tau_s,
        "tau.tau_e": tau_e,
        "seed": seed,
        "device": device,
    }
    try:
        spec = build_spec(TrainConfig, config=config, shortcuts=shortcuts, sets=overrides or ())
        if resume is not None:  # the run's recipe comes from the checkpoint
            saved = load_checkpoint(resume).manifest["config"]
            spec = {**saved, **{k: spec[k] for k in EXECUTION_FIELDS if k in spec}}
        run = validate(TrainConfig, spec)
    except (SpecError, ValueError, FileNotFoundError) as err:
        raise usage_error(str(err)) from None
    if print_config:
        typer.echo(run.model_dump_json(indent=2))
        return
    problem = device_problem(run.device)
    if problem is not None:
        raise usage_error(problem)
    _train(run, load_settings(DataSettings), output, resume, save_every, metrics_json)


def _train(
    config: TrainConfig,
    settings: DataSettings,
    output: Path,
    resume: Path | None,
    save_every: int,
    metrics_json: Path | None,
) -> None:
    """Train with a progress bar and a line per epoch; write the checkpoints as it goes."""
    from recu_core.checkpoint import sha256_file
    from recu_core.data import DatasetError
    from recu_core.train import EpochReport
    from recu_core.train import train as run_training

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} epochs"),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )
    last: list[EpochReport] = []
    best_output = output.with_name(f"{output.stem}.best{output.suffix}")

    def on_epoch(report: EpochReport) -> None:
        m = report.metrics
        progress.update(
            task,
            completed=report.epoch,
            status=f"test acc {percent(m['test_acc'])} (best {percent(m['best_test_acc'])})",
        )
        progress.console.print(
            f"epoch {report.epoch:>3}/{report.total_epochs}  tau {m['tau']:.4f}  "
            f"lr {m['lr']:.4f}  train loss {m['train_loss']:.4f}  "
            f"train acc {percent(m['train_acc'])}  test acc {percent(m['test_acc'])}  "
            f"best {percent(m['best_test_acc'])}  {m['images_per_s']:.0f} img/s"
        )
        last[:] = [report]
        if report.epoch % save_every == 0 or report.epoch == report.total_epochs:
            report.save_checkpoint(output)  # atomic: a crash leaves the previous one
        if report.is_best:
            report.save_checkpoint(best_output)

    label = (
        f"{'ReCU' if config.binary else 'FP'} {config.model} on {config.dataset.name} "
        f"({config.device})"
    )
    with progress:
        task = progress.add_task(label, total=config.epochs, status="")
        try:
            result = run_training(
                config, callbacks=[on_epoch], resume_from=resume, settings=settings
            )
        except (DatasetError, ValueError, FileNotFoundError, RuntimeError) as err:
            raise usage_error(str(err)) from None
    if not last:
        console.print("nothing to train: the checkpoint already completed every epoch")
        return
    sha = sha256_file(output)
    if metrics_json is not None:
        metrics_json.parent.mkdir(parents=True, exist_ok=True)
        metrics_json.write_text(json.dumps(result.history, indent=2))
    final = result.final
    console.print(
        f"best test accuracy {percent(final['best_test_acc'])} (epoch "
        f"{int(final['best_test_epoch'])}, what the paper reports)  last epoch's "
        f"{percent(final['test_acc'])}"
    )
    if "best_val_acc" in final:
        console.print(
            f"best validation accuracy {percent(final['best_val_acc'])} (epoch "
            f"{int(final['best_epoch'])}), test accuracy there "
            f"{percent(final['test_acc_at_best_val'])}"
        )
    console.print(
        f"data loader: {result.loader}\nlast checkpoint {output} (sha256 {sha[:16]}...), "
        f"best epoch's {best_output}"
    )


def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="A recu checkpoint (.safetensors).")],
    data_root: Annotated[
        str | None, typer.Option(help="Dataset folder, if not where the run found it.")
    ] = None,
    device: Annotated[str, typer.Option()] = "auto",
    engine: Annotated[
        InferenceEngine,
        typer.Option(
            help="The 1-bit engine for a .bnn file: fast (Numba; falls back to reference, "
            "saying why, where it cannot run) or reference (NumPy).",
        ),
    ] = InferenceEngine.FAST,
) -> None:
    """Evaluate a checkpoint (or a packed .bnn export, on the 1-bit engine) on the test
    split of the dataset it was trained on."""
    import warnings

    from recu_core.data import DatasetError
    from recu_core.model_files import evaluate_file

    settings = load_settings(DataSettings)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            result = evaluate_file(
                checkpoint,
                data_root=data_root,
                device=device,
                settings=settings,
                engine=engine.value,
            )
        for warning in caught:
            stderr.print(f"warning: {warning.message}")
    except (DatasetError, ValueError, FileNotFoundError, RuntimeError) as err:
        raise usage_error(str(err)) from None
    console.print(f"test accuracy {result.accuracy:.4%} on {result.dataset}")


def export(
    checkpoint: Annotated[Path, typer.Argument(help="A recu checkpoint (.safetensors).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The .bnn file to write.")],
    expected_sha256: Annotated[
        str | None, typer.Option(help="Refuse a checkpoint whose sha256 is not this.")
    ] = None,
) -> None:
    """Export a trained binary network with 1-bit packed weights (see docs/export.md)."""
    from recu_core.model_files import export_file

    try:
        before, after = export_file(checkpoint, output, expected_sha256=expected_sha256)
    except (ValueError, FileNotFoundError) as err:
        raise usage_error(f"cannot export {checkpoint}: {err}") from None
    console.print(
        f"wrote {output}: {after:,} bytes ({before / after:.1f}x smaller than the "
        f"{before:,}-byte checkpoint)"
    )


def inspect(
    checkpoint: Annotated[
        Path, typer.Argument(help="A recu checkpoint (.safetensors) or a packed .bnn export.")
    ],
) -> None:
    """Print a checkpoint's manifest as JSON; for a .bnn export, the manifest it carries
    with a summary first: model, binary layers, packed bits and sizes."""
    from recu_core.checkpoint import load_checkpoint, sha256_file

    try:
        if checkpoint.suffix == ".bnn":
            print_json(bnn_summary(checkpoint))
            return
        manifest = load_checkpoint(checkpoint).manifest
    except (ValueError, FileNotFoundError, IsADirectoryError) as err:
        raise usage_error(str(err)) from None
    manifest.pop("optimizer", None)
    print_json({"sha256": sha256_file(checkpoint), **manifest})
