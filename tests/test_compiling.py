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


def test_first_call_names_the_operators_vmap_loops_over_in_one_line(monkeypatch, caplog):
    """torch warns once per tracing pass for each operator without a vmap batching rule (six
    warnings for a BatchNorm ResNet); the first call turns them into one line and lets others pass, each once."""
    def tracing_compile(fn, **options):
        def compiled(*args):
            for op in ["aten::_native_batch_norm_legit_no_training", "aten::as_strided_"] * 3:
                warnings.warn(f"There is a performance drop because we have not yet implemented the batching "
                              f"rule for {op}. Please file us an issue on GitHub so that we can prioritize its "
                              f"implementation.", UserWarning)
                warnings.warn("something else", RuntimeWarning)
            return fn(*args)
        return compiled

    monkeypatch.setattr(torch, "compile", tracing_compile)
    double = compiling.compile_or_eager(lambda x: 2 * x, "the doubler")
    with caplog.at_level("INFO", logger="sgdexp.compiling"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert double(torch.tensor(3.0)) == 6.0
    assert [str(w.message) for w in caught] == ["something else"]
    looped = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert looped == ["torch.compile of the doubler: vmap has no batching rule for "
                      "aten::_native_batch_norm_legit_no_training, aten::as_strided_, so the compiled kernel loops "
                      "over samples there and may be no faster than eager (trainer.compile=false)"]
    assert any("first call (compiling)" in r.getMessage() for r in caplog.records)
    assert double.compiled()
