"""Making transformers know trbert without importing it (or torch) up front.

`install()` (run by `import trbert`) waits for transformers to load the parts that need trbert:

* when `transformers.models.auto.configuration_auto` loads, the model type "trbert" is registered
  with `AutoConfig` as a stand-in (`TRBertConfigOnDemand`): the first time a trbert checkpoint's
  config is read, it imports trbert's model classes, which register themselves with `AutoConfig`
  and every `AutoModelFor...` class, and hands over to the real `TRBertConfig`;
* when `transformers.pipelines` loads, trbert's extractive question-answering pipeline registers.

So `import trbert` stays light, and a script that imports trbert and then calls
`AutoModelForSequenceClassification.from_pretrained(...)` or `pipeline("question-answering", ...)`
still gets trbert's classes. A watched module is touched only after it has run to its end, and
registering the stand-in imports nothing: transformers may load its config mapping in the middle of
its own imports (BERT's modules do), when importing trbert's models there would break them.
"""

import importlib
import importlib.abc
import sys


def _model_classes():
    """trbert's models: importing them registers them with the Auto classes (`trbert.modeling`)."""
    return importlib.import_module("trbert.modeling")


class TRBertConfigOnDemand:
    """Stands for `trbert.TRBertConfig` in `AutoConfig`'s mapping until a trbert config is made."""

    model_type = "trbert"

    def __new__(cls, *args, **kwargs):
        return _model_classes().TRBertConfig(*args, **kwargs)

    @classmethod
    def from_dict(cls, *args, **kwargs):
        return _model_classes().TRBertConfig.from_dict(*args, **kwargs)


def _config_mapping_loaded(module) -> None:
    if "trbert" not in module.CONFIG_MAPPING:
        module.CONFIG_MAPPING.register("trbert", TRBertConfigOnDemand, exist_ok=True)


def _pipelines_loaded(module) -> None:
    importlib.import_module("trbert.pipelines")  # registers itself


# transformers module -> what to do once it has run to its end
_HOOKS = {
    "transformers.models.auto.configuration_auto": _config_mapping_loaded,
    "transformers.pipelines": _pipelines_loaded,
}


class _AfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """A finder that lets the other finders find the watched modules, then runs the hook after the
    module has executed."""

    def __init__(self):
        self._loaders = {}

    def find_spec(self, name, path=None, target=None):
        if name not in _HOOKS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None:
            return spec
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
        _HOOKS[name](module)


_FINDER = _AfterImport()


def install() -> None:
    """Register now with what transformers has loaded already; watch for the rest."""
    for name, hook in _HOOKS.items():
        if name in sys.modules:
            hook(sys.modules[name])
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
