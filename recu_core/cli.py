"""``recu`` command line: local training and checkpoint inspection.

recu train --model resnet20 --dataset digits --epochs 30 -o var/runs/resnet20.safetensors
recu evaluate var/runs/resnet20.safetensors
recu inspect var/runs/resnet20.safetensors
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from recu_core.config import (
    DatasetConfig,
    DatasetName,
    ModelName,
    ScheduleKind,
    SteName,
    TrainConfig,
)
from recu_core.recipes import RecipeName

app = typer.Typer(
    help="ReCU binary neural networks: train, evaluate, inspect.", no_args_is_help=True
)
console = Console()


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=2)


def _given(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` without the options left unset (None), and without sections left empty:
    what is not given comes from the recipe, else from TrainConfig's defaults."""
    out: dict[str, Any] = {}
    for key, value in spec.items():
        if isinstance(value, dict):
            value = _given(value)
            if not value:
                continue
        if value is not None:
            out[key] = value
    return out


def _validation_message(err: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in err.errors()
    )


@app.command()
def train(
    recipe: Annotated[
        RecipeName | None,
        typer.Option(help="Start from an official run's preset; other flags override it."),
    ] = None,
    model: Annotated[ModelName | None, typer.Option(help="Model name.")] = None,
    dataset: Annotated[DatasetName | None, typer.Option(help="Dataset name.")] = None,
    data_root: Annotated[
        str | None, typer.Option(help="Dataset folder, relative to RECU_DATA_DIR or absolute.")
    ] = None,
    image_size: Annotated[int | None, typer.Option(help="imagefolder: resize to NxN.")] = None,
    num_train: Annotated[int | None, typer.Option(help="Use at most N train images.")] = None,
    num_test: Annotated[int | None, typer.Option(help="Use at most N test images.")] = None,
    val_fraction: Annotated[
        float | None, typer.Option(help="Hold out this fraction of train as validation.")
    ] = None,
    loader: Annotated[
        str | None, typer.Option(help="imagefolder: auto, memory or streaming.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Default 30.")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Default 128.")] = None,
    optimizer: Annotated[str | None, typer.Option(help="sgd (default) or adam.")] = None,
    lr: Annotated[float | None, typer.Option(help="Default 0.1.")] = None,
    momentum: Annotated[float | None, typer.Option(help="SGD momentum (0.9).")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="Default 5e-4.")] = None,
    warmup_epochs: Annotated[float | None, typer.Option()] = None,
    lr_schedule: Annotated[
        str | None, typer.Option(help="epoch (the official, default) or step.")
    ] = None,
    label_smoothing: Annotated[float | None, typer.Option()] = None,
    tau_schedule: Annotated[ScheduleKind | None, typer.Option(help="exponential.")] = None,
    tau_s: Annotated[float | None, typer.Option(help="tau at the start (0.85).")] = None,
    tau_e: Annotated[float | None, typer.Option(help="tau at the end (0.99).")] = None,
    clamp: Annotated[bool | None, typer.Option(help="ReCU clamp (off: plain BNN).")] = None,
    standardize: Annotated[
        bool | None, typer.Option(help="Per-filter weight standardisation.")
    ] = None,
    activation_ste: Annotated[SteName | None, typer.Option()] = None,
    alpha: Annotated[bool | None, typer.Option(help="Learned per-channel alpha.")] = None,
    scale_activations: Annotated[
        bool | None, typer.Option(help="Per-sample activation scaling before sign (training).")
    ] = None,
    full_precision: Annotated[bool, typer.Option(help="Train the full-precision twin.")] = False,
    seed: Annotated[int | None, typer.Option()] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:N.")] = None,
    bf16: Annotated[bool, typer.Option(help="bf16 autocast (CUDA).")] = False,
    channels_last: Annotated[bool | None, typer.Option()] = None,
    compile_model: Annotated[
        bool | None, typer.Option("--compile", help="torch.compile the whole model.")
    ] = None,
    kernels: Annotated[
        str | None, typer.Option(help="compiled (fused activation kernels) or eager.")
    ] = None,
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
) -> None:
    """Train a model locally and write a resumable safetensors checkpoint."""
    from recu_core.checkpoint import load_checkpoint, sha256_file
    from recu_core.data import DatasetError
    from recu_core.train import EXECUTION_FIELDS, EpochReport
    from recu_core.train import train as run_training

    spec = _given(
        {
            "recipe": recipe,
            "model": model,
            "binary": False if full_precision else None,
            "dataset": {
                "name": dataset,
                "root": data_root,
                "image_size": image_size,
                "num_train": num_train,
                "num_test": num_test,
                "val_fraction": val_fraction,
                "loader": loader,
            },
            "binary_options": {
                "clamp": clamp,
                "standardize": standardize,
                "activation_ste": activation_ste,
                "alpha": None if alpha is None else ("learned" if alpha else "none"),
                "scale_activations": scale_activations,
            },
            "tau": {"kind": tau_schedule, "tau_s": tau_s, "tau_e": tau_e},
            "optimizer": {
                "name": optimizer,
                "lr": lr,
                "momentum": momentum,
                "weight_decay": weight_decay,
                "warmup_epochs": warmup_epochs,
                "lr_schedule": lr_schedule,
                "label_smoothing": label_smoothing,
            },
            "epochs": epochs,
            "batch_size": batch_size,
            "seed": seed,
            "precision": "bf16" if bf16 else None,
            "channels_last": channels_last,
            "compile": compile_model,
            "kernels": kernels,
            "device": device,
        }
    )
    try:
        if resume is not None:  # the run's recipe comes from the checkpoint
            saved = load_checkpoint(resume).manifest["config"]
            spec = {**saved, **{k: spec[k] for k in EXECUTION_FIELDS if k in spec}}
        config = TrainConfig.model_validate(spec)
    except ValidationError as err:
        raise _fail(_validation_message(err)) from None
    except (ValueError, FileNotFoundError) as err:
        raise _fail(str(err)) from None

    table = Table("epoch", "tau", "lr", "train loss", "train acc", "test acc", "best", "img/s")
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

    def on_epoch(report: EpochReport) -> None:
        m = report.metrics
        progress.update(
            task,
            completed=report.epoch,
            status=f"test acc {m['test_acc']:.2%} (best {m['best_test_acc']:.2%})",
        )
        progress.console.print(
            f"epoch {report.epoch:>3}/{report.total_epochs}  tau {m['tau']:.4f}  "
            f"lr {m['lr']:.4f}  train loss {m['train_loss']:.4f}  "
            f"train acc {m['train_acc']:.2%}  test acc {m['test_acc']:.2%}  "
            f"best {m['best_test_acc']:.2%}  {m['images_per_s']:.0f} img/s"
        )
        table.add_row(
            str(report.epoch),
            f"{m['tau']:.4f}",
            f"{m['lr']:.4f}",
            f"{m['train_loss']:.4f}",
            f"{m['train_acc']:.2%}",
            f"{m['test_acc']:.2%}",
            f"{m['best_test_acc']:.2%}",
            f"{m['images_per_s']:.0f}",
        )
        last[:] = [report]
        if report.epoch % save_every == 0 or report.epoch == report.total_epochs:
            report.save_checkpoint(output)  # atomic: a crash leaves the previous one
        if report.is_best:
            report.save_checkpoint(best_output)

    best_output = output.with_name(f"{output.stem}.best{output.suffix}")
    label = f"{'ReCU' if config.binary else 'FP'} {config.model} on {config.dataset.name}"
    with progress:
        task = progress.add_task(label, total=config.epochs, status="")
        try:
            result = run_training(config, callbacks=[on_epoch], resume_from=resume)
        except (DatasetError, ValueError, FileNotFoundError, RuntimeError) as err:
            raise _fail(str(err)) from None
    if not last:
        console.print("nothing to train: the checkpoint already completed every epoch")
        return
    sha = sha256_file(output)
    if metrics_json is not None:
        metrics_json.parent.mkdir(parents=True, exist_ok=True)
        metrics_json.write_text(json.dumps(result.history, indent=2))
    final = result.final
    console.print(
        f"best test accuracy {final['best_test_acc']:.2%} (epoch {int(final['best_test_epoch'])}"
        f", what the paper reports)  last epoch's {final['test_acc']:.2%}"
    )
    if "best_val_acc" in final:
        console.print(
            f"best validation accuracy {final['best_val_acc']:.2%} (epoch "
            f"{int(final['best_epoch'])}), test accuracy there {final['test_acc_at_best_val']:.2%}"
        )
    console.print(
        f"data loader: {result.loader}\nlast checkpoint {output} (sha256 {sha[:16]}...), "
        f"best epoch's {best_output}"
    )


@app.command()
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="A recu checkpoint (.safetensors).")],
    data_root: Annotated[
        str | None, typer.Option(help="Dataset folder, if not where the run found it.")
    ] = None,
    device: Annotated[str, typer.Option()] = "auto",
) -> None:
    """Evaluate a checkpoint (or a packed .bnn export, on the 1-bit engine) on the test
    split of the dataset it was trained on."""
    from recu_core.checkpoint import load_checkpoint
    from recu_core.data import DatasetError, load_dataset
    from recu_core.export.bnn_file import load_packed_model, read_bnn
    from recu_core.train import evaluate_accuracy, load_trained_model

    try:
        if checkpoint.suffix == ".bnn":
            raw = checkpoint.read_bytes()
            manifest = read_bnn(raw)[1]
            build = lambda: load_packed_model(raw)  # noqa: E731
        else:
            ckpt = load_checkpoint(checkpoint)
            manifest = ckpt.manifest
            build = lambda: load_trained_model(ckpt)  # noqa: E731
        data_cfg = DatasetConfig.model_validate(manifest["config"]["dataset"])
        if data_root is not None:
            data_cfg = data_cfg.model_copy(update={"root": data_root})
        data = load_dataset(data_cfg)
        shape = {
            "num_classes": data.num_classes,
            "in_channels": data.in_channels,
            "image_size": data.image_size,
        }
        if shape != manifest["dataset_shape"]:
            raise ValueError(
                f"dataset shape {shape} differs from the checkpoint's {manifest['dataset_shape']}"
            )
        accuracy = evaluate_accuracy(
            build(), data, device="cpu" if checkpoint.suffix == ".bnn" else device
        )
    except (DatasetError, ValueError, FileNotFoundError, KeyError, RuntimeError) as err:
        message = f"manifest lacks {err}" if isinstance(err, KeyError) else str(err)
        raise _fail(message) from None
    console.print(f"test accuracy {accuracy:.4%} on {data_cfg.name}")


@app.command()
def export(
    checkpoint: Annotated[Path, typer.Argument(help="A recu checkpoint (.safetensors).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The .bnn file to write.")],
) -> None:
    """Export a trained binary network with 1-bit packed weights (see docs/export.md)."""
    import os

    from recu_core.export.bnn_file import export_checkpoint

    try:
        data = export_checkpoint(checkpoint)
    except (ValueError, FileNotFoundError) as err:
        raise _fail(str(err)) from None
    partial = output.with_name(f".{output.name}.part")
    partial.write_bytes(data)
    os.replace(partial, output)
    before = checkpoint.stat().st_size
    console.print(
        f"wrote {output}: {len(data):,} bytes ({before / len(data):.1f}x smaller than the "
        f"{before:,}-byte checkpoint)"
    )


@app.command()
def inspect(
    checkpoint: Annotated[Path, typer.Argument(help="A recu checkpoint (.safetensors).")],
) -> None:
    """Print a checkpoint's manifest as JSON."""
    from recu_core.checkpoint import load_checkpoint, sha256_file

    try:
        manifest = load_checkpoint(checkpoint).manifest
    except (ValueError, FileNotFoundError) as err:
        raise _fail(str(err)) from None
    manifest.pop("optimizer", None)
    console.print_json(json.dumps({"sha256": sha256_file(checkpoint), **manifest}))


if __name__ == "__main__":
    app()
