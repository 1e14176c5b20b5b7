"""The llama.cpp backend: the only code that imports llama_cpp."""
