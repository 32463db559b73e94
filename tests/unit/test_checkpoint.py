"""Checkpoints round-trip bit-exactly and are verified against their sha256."""

import hashlib
import json

import pytest
import torch
from safetensors.torch import save_file

from recu_core.checkpoint import load_checkpoint, save_checkpoint
from recu_core.models import create_model


def _trained(optimizer_name):
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10, in_channels=1, image_size=8)
    params = model.parameters()
    opt = (
        torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)
        if optimizer_name == "sgd"
        else torch.optim.Adam(params, lr=1e-3)
    )
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(8, 1, 8, 8)).logsumexp(1).mean().backward()
        opt.step()
    return model, opt


@pytest.mark.parametrize("optimizer_name", ["sgd", "adam"])
def test_round_trip_is_bit_exact(tmp_path, optimizer_name):
    model, opt = _trained(optimizer_name)
    path = tmp_path / "ckpt.safetensors"
    sha = save_checkpoint(path, model, opt, {"epoch": 3, "metrics": {"test_acc": 0.5}})
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()

    ckpt = load_checkpoint(path, expected_sha256=sha)
    assert ckpt.manifest["epoch"] == 3
    assert ckpt.manifest["versions"]["torch"] == torch.__version__
    fresh = create_model("resnet20", num_classes=10, in_channels=1, image_size=8)
    fresh.load_state_dict(ckpt.model_state)
    for key, value in model.state_dict().items():
        restored = fresh.state_dict()[key]
        assert restored.dtype == value.dtype
        assert torch.equal(restored, value), key

    fresh_opt = type(opt)(fresh.parameters(), lr=0.5)
    fresh_opt.load_state_dict(ckpt.optimizer_state)
    original, loaded = opt.state_dict(), fresh_opt.state_dict()
    assert original["param_groups"] == loaded["param_groups"]
    for index, entry in original["state"].items():
        for key, value in entry.items():
            other = loaded["state"][index][key]
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, other), (index, key)
            else:
                assert value == other


def test_wrong_sha256_is_refused(tmp_path):
    model, opt = _trained("sgd")
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model, opt, {"epoch": 1})
    with pytest.raises(ValueError, match="expected 0000"):
        load_checkpoint(path, expected_sha256="0000")


def test_safetensors_without_manifest_is_refused(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="without a recu manifest"):
        load_checkpoint(path)


def test_pickle_file_is_not_loaded(tmp_path):
    # A torch.save (pickle) file is not safetensors: loading fails without unpickling it.
    path = tmp_path / "evil.pt"
    torch.save({"x": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="is not a safetensors checkpoint"):
        load_checkpoint(path)


def test_manifest_is_plain_json(tmp_path):
    model, _ = _trained("sgd")
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, None, {"epoch": 2, "config": {"model": "resnet20"}})
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    header = json.loads(path.read_bytes()[8 : 8 + header_len])
    manifest = json.loads(header["__metadata__"]["manifest"])
    assert manifest["config"] == {"model": "resnet20"}
    assert load_checkpoint(path).optimizer_state is None


def test_a_resnet18_checkpoint_from_before_the_official_networks_loads_as_resnet18_bireal(
    tmp_path,
):
    """Revision-1 manifests (no "networks" key) called the Bi-Real variant "resnet18": its
    tensors fit the new resnet18 exactly, so without the upgrade it would load silently and
    compute another function."""
    from recu_core.config import TrainConfig
    from recu_core.train import load_trained_model

    torch.manual_seed(0)
    old = create_model("resnet18_bireal", num_classes=10, in_channels=3, image_size=32).eval()
    manifest = {
        "format": "recu-checkpoint",
        "config": TrainConfig(model="resnet18").model_dump(mode="json"),
        "epoch": 1,
        "dataset_shape": {"num_classes": 10, "in_channels": 3, "image_size": 32},
    }
    tensors = {f"model.{k}": v.contiguous() for k, v in old.state_dict().items()}
    save_file(tensors, tmp_path / "old.safetensors", metadata={"manifest": json.dumps(manifest)})
    loaded = load_trained_model(tmp_path / "old.safetensors")
    assert load_checkpoint(tmp_path / "old.safetensors").manifest["config"]["model"] == (
        "resnet18_bireal"
    )
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded(x), old(x))
    new = create_model("resnet18", num_classes=10, in_channels=3, image_size=32).eval()
    new.load_state_dict(old.state_dict())  # it would fit: the danger the upgrade removes
    assert (new(x) - old(x)).abs().max() > 1e-3
