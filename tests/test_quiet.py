"""A quiet console: runtime log lines go to the output folder's log, library noise is filtered, real
warnings still show."""
from __future__ import annotations

import sys
import warnings

import torch

from pocketvqe.device_tests.targets.host import _threadpool
from pocketvqe.export.lower import load_method, lower, to_buffer
from pocketvqe.models.step import capture
from pocketvqe.quiet import filter_noise, runtime_log


def _program() -> bytes:
    return to_buffer(lower(capture(torch.nn.Linear(4, 4).eval(), (torch.zeros(1, 4),))))


def _run(buffer: bytes) -> None:
    with _threadpool(1), _threadpool(2):          # each reset is a "[threadpool.cpp]" line of the runtime
        load_method(buffer).execute([torch.zeros(1, 4)])


def test_runtime_lines_go_to_the_log_not_the_console(tmp_path, capsys):
    buffer = _program()
    capsys.readouterr()
    _run(buffer)                                  # the mutation: without the log, the console gets them
    assert "threadpool" in capsys.readouterr().err
    log = tmp_path / "runtime.log"
    with runtime_log(log):
        _run(buffer)
        print("inside")
    print("outside", file=sys.stderr)
    seen = capsys.readouterr()
    assert "threadpool" not in seen.err + seen.out and "outside" in seen.err
    assert "threadpool" in log.read_text() and "inside" in log.read_text()


def test_known_noise_is_filtered_and_other_warnings_show():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        filter_noise()
        warnings.warn("isinstance(treespec, LeafSpec) is deprecated", FutureWarning)
        warnings.warn("a real problem", FutureWarning)
    assert [str(w.message) for w in caught] == ["a real problem"]
