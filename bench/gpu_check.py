"""GPU check (one CUDA GPU, well under 5 minutes): the binary ResNet-20 training step with
bf16 autocast and channels_last runs with ``torch.cuda.set_sync_debug_mode("error")``,
so any device-to-host synchronisation in the step fails loudly; prints images/s for
fp32 and bf16 + channels_last, then runs the real training loop for three epochs under
``set_sync_debug_mode("warn")`` and counts its synchronisations per epoch (expected: one,
the single metrics transfer).

    bash bench/gpu_check.sh
"""

from __future__ import annotations

import itertools
import time
import warnings

import torch
import torch.nn.functional as F

from recu_core.config import DatasetConfig, TrainConfig
from recu_core.data import DeviceLoader, load_dataset
from recu_core.layers import set_tau, use_compiled_kernels
from recu_core.models import create_model
from recu_core.train import train


def throughput(dataset, *, bf16: bool, channels_last: bool, steps: int = 50) -> float:
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10, in_channels=3, image_size=32).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    set_tau(model, 0.9)
    use_compiled_kernels(model)  # the trainer's default: Triton-fused activation kernels
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    loader = DeviceLoader(
        dataset.train_images,
        dataset.train_labels,
        batch_size=256,
        mean=dataset.mean,
        std=dataset.std,
        train=True,
        crop_padding=4,
        flip=True,
        device=device,
        channels_last=channels_last,
    )
    dtype = torch.bfloat16 if bf16 else torch.float32

    def run(n: int) -> int:
        seen = 0
        for epoch in range(10_000):
            for x, y in loader.epoch(epoch):
                with torch.autocast("cuda", dtype=dtype, enabled=bf16):
                    loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                seen += y.shape[0]
                n -= 1
                if n == 0:
                    return seen
        return seen

    run(10)  # warm-up: compilation, cuDNN autotuning and allocator growth may synchronise
    torch.cuda.synchronize()
    start = time.perf_counter()
    torch.cuda.set_sync_debug_mode("error")
    try:
        seen = run(steps)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def loop_syncs(epochs: int = 3) -> list[int]:
    """Synchronisations per epoch of the real training loop (after the first epoch, so
    set-up copies to the device are not counted): the differences between the warning
    counts seen by consecutive epoch callbacks."""
    config = TrainConfig(
        dataset=DatasetConfig(name="synthetic", num_train=4096, num_test=1024),
        epochs=epochs,
        batch_size=256,
        precision="bf16",
        channels_last=True,
        device="cuda",
    )
    dataset = load_dataset(config.dataset)
    train(config.model_copy(update={"epochs": 1}), dataset=dataset)  # warm-up: compilation
    marks: list[int] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            train(config, dataset=dataset, callbacks=[lambda report: marks.append(len(caught))])
        finally:
            torch.cuda.set_sync_debug_mode("default")
    for w in caught[marks[0] :]:
        print(f"  sync: {w.filename}:{w.lineno}: {str(w.message)[:100]}")
    return [b - a for a, b in itertools.pairwise(marks)]


def main() -> None:
    assert torch.cuda.is_available(), "no CUDA device visible to torch"
    print(f"# GPU check: {torch.cuda.get_device_name()} torch {torch.__version__}")
    dataset = load_dataset(DatasetConfig(name="synthetic", num_train=20_000, num_test=1000))
    fp32 = throughput(dataset, bf16=False, channels_last=False)
    print(f"ReCU ResNet-20 fp32 step, sync-debug 'error': {fp32:,.0f} img/s (no sync)")
    bf16 = throughput(dataset, bf16=True, channels_last=True)
    print(f"ReCU ResNet-20 bf16 + channels_last, 'error': {bf16:,.0f} img/s (no sync)")
    syncs = loop_syncs(epochs=2)
    print(
        f"training loop, 2 epochs under sync-debug 'warn': {syncs} synchronisations "
        f"(expected <= 2: one per epoch)"
    )
    if syncs > 2:
        raise SystemExit("more than one host synchronisation per epoch")


if __name__ == "__main__":
    main()
