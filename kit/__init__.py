"""perskit: a lightweight local/edge personification kit (PersLLM method).

Importing ``kit`` is cheap and side-effect free: every heavy dependency (torch,
transformers, trl, llama_cpp, mlx, unsloth) is imported inside the function that
needs it, so ``perskit --help`` and ``perskit persona validate`` work on a bare
install.
"""

__version__ = "0.1.0"
