"""Scripts that measure speed, overhead and agent quality (``python -m benchmarks.NAME``).

Most of them run the engine in their own process, so the package loads libllama before any
benchmark module can import numpy: a CUDA build crashed at model load in the other order
(``models.engine.llama.library.load_first`` says why). ``LLAMA_CPP_LIB_PATH`` still chooses
the library, as it does for llama-cpp-python.
"""

from models.engine.llama.library import load_first

load_first()
