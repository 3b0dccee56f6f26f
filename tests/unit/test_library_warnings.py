"""Importing diffusers with the quantisation libraries installed prints nothing a user must read."""

from __future__ import annotations

import os
import subprocess
import sys


def test_a_model_import_prints_no_library_warnings():
    code = "import kubin, diffusers; diffusers.KandinskyV22Pipeline; diffusers.Kandinsky5T2IPipeline; print('ok')"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env={**os.environ}
    )

    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    for noise in ("Unable to import `torchao` Tensor objects", "is an Enum subclass", "gemm_4bit_forward"):
        assert noise not in done.stderr, done.stderr


def test_other_warnings_of_those_loggers_still_show(caplog):
    import logging

    import kubin  # noqa: F401  (installs the filters)

    logger = logging.getLogger("torch.utils._pytree")
    with caplog.at_level(logging.WARNING, logger="torch.utils._pytree"):
        logger.warning("%s is an Enum subclass and is now natively supported by torch.compile", "X")
        logger.warning("something else went wrong")

    assert [r.getMessage() for r in caplog.records] == ["something else went wrong"]
