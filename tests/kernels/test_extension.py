"""The csrc loader: never raises for a missing toolchain, reports why, keys its cache by source."""
from __future__ import annotations

import pytest
import torch

from longctx.kernels import extension


def test_cache_directory_changes_with_the_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("LONGCTX_EXT_CACHE", str(tmp_path / "cache"))
    fake_csrc = tmp_path / "csrc"
    (fake_csrc / "host").mkdir(parents=True)
    (fake_csrc / "host" / "zigzag_index.cpp").write_text("// v1\n")
    monkeypatch.setattr(extension, "csrc_dir", lambda: fake_csrc)
    first = extension.cache_dir("host")
    (fake_csrc / "host" / "zigzag_index.cpp").write_text("// v2\n")
    second = extension.cache_dir("host")
    assert first != second and first.parent == second.parent == tmp_path / "cache"


def test_sources_named_by_the_specs_exist():
    for spec in extension.EXTENSIONS.values():
        for source in spec.sources:
            assert (extension.csrc_dir() / source).is_file(), source


@pytest.mark.skipif(torch.version.cuda is not None, reason="checks the CPU-only torch path")
def test_cuda_extension_on_cpu_torch_is_absent_with_a_reason_not_an_error():
    assert extension.load("cuda", build=True) is None
    assert "CUDA build of torch" in extension.why_unavailable("cuda")


def test_unknown_extension_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown extension 'gpu'"):
        extension.load("gpu")
