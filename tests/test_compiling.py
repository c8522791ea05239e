"""The torch.compile wrapper falls back to eager, with one warning, when compiling fails."""
import warnings

import pytest
import torch

from sgdexp import compiling


def test_compile_or_eager_falls_back_with_one_warning(monkeypatch):
    def broken_compile(fn, **options):
        def compiled(*args):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore detail")
        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    double = compiling.compile_or_eager(lambda x: 2 * x, "the doubler")
    with pytest.warns(UserWarning, match="torch.compile of the doubler failed .*No working C"):
        assert double(torch.tensor(3.0)) == 6.0
    assert not double.compiled()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second call neither retries nor warns
        assert double(torch.tensor(4.0)) == 8.0
