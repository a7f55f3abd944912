__version__ = "0.1.0"

# OpenMP reads its wait policy when torch loads it, so the package's thread settings go into the environment
# before any of its modules imports torch (nbs/02b_threads.ipynb; SFTR_THREADS=off turns them off).
# glibc's malloc is told to keep freed memory for the next step's tensors (SFTR_MALLOC=off turns that off).
from .threads import configure_threads as _configure_threads, configure_allocator as _configure_allocator
_configure_threads()
_configure_allocator()
