"""Dataset roots stay inside the data directory, whatever the spelling."""

from pathlib import Path

import pytest

from recu_core.paths import RootOutsideDataDirError, confined_root


@pytest.mark.parametrize("root", ["cifar10", "a/b/../c", "./x", "a//b"])
def test_roots_inside_resolve_under_the_data_directory(tmp_path, root):
    resolved = confined_root(root, tmp_path)
    assert resolved.is_relative_to(tmp_path)
    assert ".." not in resolved.parts


def test_an_absolute_root_inside_the_data_directory_is_kept(tmp_path):
    assert confined_root(str(tmp_path / "imagenet"), tmp_path) == tmp_path / "imagenet"
    assert confined_root(str(tmp_path), tmp_path) == tmp_path


@pytest.mark.parametrize(
    "root", ["..", "../x", "a/../../x", "/etc/passwd", "~", "x/\x00y", "../" + "data-evil"]
)
def test_roots_leaving_the_data_directory_are_refused(tmp_path, root):
    data = tmp_path / "data"
    with pytest.raises(RootOutsideDataDirError):
        confined_root(root, data)


def test_a_sibling_with_a_common_prefix_is_outside(tmp_path):
    with pytest.raises(RootOutsideDataDirError, match="outside the data directory"):
        confined_root(str(tmp_path / "data-evil"), tmp_path / "data")
    assert confined_root("x", Path(str(tmp_path / "data") + "/")) == tmp_path / "data" / "x"
