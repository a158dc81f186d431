"""The vcq_hf logger: one library root, transformers-style verbosity API, env var, and the model files' loggers."""

import os
import subprocess
import sys

import pytest

from vcq_hf.utils import logging


@pytest.fixture
def restore_verbosity():
    before = logging.get_verbosity()
    yield
    logging.set_verbosity(before)


def test_set_verbosity_reaches_every_module_logger(restore_verbosity, caplog):
    # Loggers of tooling modules (vcq_hf.utils.logging.get_logger) and of the model files
    # (transformers.utils.logging.get_logger) are children of the one "vcq_hf" root.
    from transformers.utils import logging as transformers_logging

    data_logger = logging.get_logger("vcq_hf.data.builtin")
    model_logger = transformers_logging.get_logger("vcq_hf.modeling_vcq")
    logging.set_verbosity_error()
    assert not data_logger.isEnabledFor(logging.INFO) and not model_logger.isEnabledFor(logging.WARNING)
    logging.set_verbosity("info")
    assert data_logger.isEnabledFor(logging.INFO) and model_logger.isEnabledFor(logging.INFO)
    assert logging.get_verbosity() == logging.INFO


@pytest.mark.parametrize("bad", ["loud", 7, True, None])
def test_bad_verbosity_names_the_allowed_levels(bad, restore_verbosity):
    with pytest.raises(ValueError, match="is not a log level"):
        logging.set_verbosity(bad)


def test_records_go_to_stderr_once_and_follow_the_env_var():
    script = (
        "from vcq_hf.utils import logging\n"
        "log = logging.get_logger('vcq_hf.data.builtin')\n"
        "log.info('info-line'); log.warning('warning-line')\n"
    )
    quiet = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert quiet.returncode == 0 and quiet.stderr.count("warning-line") == 1 and "info-line" not in quiet.stderr
    loud = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "VCQ_HF_VERBOSITY": "info"},
    )
    assert loud.stderr.count("info-line") == 1 and "[INFO|vcq_hf.data.builtin]" in loud.stderr


def test_disable_default_handler_propagates_to_the_application(restore_verbosity, caplog):
    logging.disable_default_handler()
    try:
        logging.set_verbosity_info()
        with caplog.at_level(logging.INFO):
            logging.get_logger("vcq_hf.hub.pipeline").info("hello app")
        assert "hello app" in caplog.text
    finally:
        logging.enable_default_handler()
