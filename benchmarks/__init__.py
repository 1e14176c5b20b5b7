"""Scripts that measure speed, overhead and agent quality (``python -m benchmarks.NAME``).

Most of them run the engine in their own process, so the package loads libllama before any
benchmark module can import numpy: a CUDA build crashed at model load in the other order
(``models.engine.llama.library.load_first`` says why). ``LLAMA_CPP_LIB_PATH`` still chooses
the library, as it does for llama-cpp-python.

Their servers keep no records (``CODEACT_STORE=none`` unless set): two benchmarks side by
side would otherwise contend for the one default store, which a server holds alone.
"""

import os

from models.engine.llama.library import load_first

os.environ.setdefault("CODEACT_STORE", "none")
load_first()
