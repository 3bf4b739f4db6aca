"""`mlsec cache info|clear`: the result cache that spares unchanged files a second scan, and the parsed rules."""

from __future__ import annotations

import click

from mlsec.cache import ResultCache
from mlsec.rules import forget_parsed


@click.group("cache")
def cache_group() -> None:
    """Inspect or empty the result cache ($MLSEC_CACHE_DIR, else ~/.cache/mlsec)."""


@cache_group.command("info")
def info_command() -> None:
    """Say where the cache is and how much it holds."""
    cache = ResultCache()
    stats = cache.stats()
    click.echo(f"{cache.path}: {stats['results']} results for {stats['files']} files, {stats['bytes']:,} bytes on disk")


@cache_group.command("clear")
def clear_command() -> None:
    """Delete the cache (results and parsed rules); the next scan reads every file again."""
    cache = ResultCache()
    removed = cache.clear() + forget_parsed()
    click.echo(f"removed {removed} file(s) from {cache.directory}")
