"""Plug-ins by name, imported on first use.

A registry maps each name to 'module:attribute'. Listing the names (for a flag's choices and
`--help`) imports nothing, so the scripts answer before TensorFlow loads; looking a name up
imports its module. A new plug-in is one new file plus one line in its registry.
"""
import collections.abc
import functools
import importlib


class Registry(collections.abc.Mapping):
    """A read-only {name: object} whose objects are imported when first looked up."""

    def __init__(self, entries):
        self._entries = dict(entries)

    def __getitem__(self, name):
        return _load(self._entries[name])

    def __iter__(self):
        return iter(self._entries)

    def __len__(self):
        return len(self._entries)


@functools.lru_cache(maxsize=None)
def _load(target):
    module, _, attribute = target.partition(':')
    return getattr(importlib.import_module(module), attribute)
