"""pipguard: pip, with source builds going through a locked, shared wheel cache."""

__version__ = "0.2.0"
