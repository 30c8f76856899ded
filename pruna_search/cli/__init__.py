"""Command-line entry points (Hydra lives only here): ``pruna-search``, ``pruna-search-export``."""
