"""Allow ``python -m trt``."""

from trt._cli._main import entry

entry()
