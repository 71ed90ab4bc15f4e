"""worldmodel: world-model agents that imagine before they act and never break the rules."""
from __future__ import annotations

__version__ = "0.1.0"


def train(*args, **kwargs):
    """See worldmodel.api.train."""
    from worldmodel.api import train as _train
    return _train(*args, **kwargs)


def load(*args, **kwargs):
    """See worldmodel.api.load."""
    from worldmodel.api import load as _load
    return _load(*args, **kwargs)


__all__ = ["train", "load", "__version__"]
