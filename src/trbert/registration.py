"""Making transformers know trbert without importing it (or torch) up front.

`install()` registers trbert with transformers as soon as transformers loads the part that needs it:
the config and models with the Auto classes when `transformers.models.auto.modeling_auto` loads,
and the extractive question-answering pipeline when `transformers.pipelines` loads (or at once, for
the parts already loaded). So `import trbert` stays as fast as importing nothing heavy, and a
script that only imports trbert and then calls `AutoModel.from_pretrained(...)` or
`pipeline("question-answering", ...)` still gets trbert's classes.
"""

import importlib
import importlib.abc
import sys

# transformers module -> what to do once it has loaded
_HOOKS = {
    "transformers.models.auto.modeling_auto": lambda: importlib.import_module("trbert.modeling"),
    "transformers.pipelines": lambda: importlib.import_module("trbert.pipelines"),  # registers itself
}


class _AfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """A finder that lets the other finders find the watched modules, then runs the hook after the
    module has executed."""

    def find_spec(self, name, path=None, target=None):
        if name not in _HOOKS:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = getattr(finder, "find_spec", lambda *_: None)(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None:
            return spec
        self._loaders = getattr(self, "_loaders", {})
        self._loaders[name] = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return self._loaders[spec.name].create_module(spec)

    def exec_module(self, module):
        name = module.__spec__.name
        loader = self._loaders.pop(name)
        module.__spec__.loader = module.__loader__ = loader
        loader.exec_module(module)
        _HOOKS[name]()


_FINDER = _AfterImport()


def install() -> None:
    """Register now what transformers has loaded already; watch for the rest."""
    for name, hook in _HOOKS.items():
        if name in sys.modules:
            hook()
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
