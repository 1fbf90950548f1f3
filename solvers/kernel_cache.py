"""numba's on-disk cache of compiled kernels, kept in step with the files a kernel calls into.

numba caches a kernel in the ``__pycache__`` beside its module and expires it when that module's file
changes, but a kernel that calls compiled functions of other files carries their code too, and numba
does not notice when those files change: after an edit or a ``git pull`` of ``solvers/newton.py``,
``sfl_env/latency_kernels.py`` would go on running the old solver. :func:`drop_stale_kernels`, called
where such a module is imported (before any of its kernels runs), removes that module's cached kernels
when the files it depends on differ from those it was cached with, so they compile afresh.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["drop_stale_kernels"]


def drop_stale_kernels(module_file: str, *dependencies: str) -> None:
    """Removes the cached kernels of the module at ``module_file`` unless the files ``dependencies`` (the
    modules whose compiled functions its kernels call) are those its cache was made with."""
    module = Path(module_file)
    cache = module.parent / "__pycache__"
    digest = hashlib.sha256()
    for dependency in dependencies:
        digest.update(Path(dependency).read_bytes())
    stamp = digest.hexdigest()
    marker = cache / f"{module.stem}.dependencies"
    try:
        if marker.read_text() == stamp:
            return
    except OSError:
        pass
    try:
        for cached in [*cache.glob(f"{module.stem}.*.nbi"), *cache.glob(f"{module.stem}.*.nbc")]:
            cached.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        partial = cache / f"{marker.name}.{os.getpid()}"
        partial.write_text(stamp)
        os.replace(partial, marker)
    except OSError:  # a read-only install: numba caches elsewhere, and its files do not change
        pass
